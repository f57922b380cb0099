#!/usr/bin/python3
"""synth.py: demo data that makes the data recipe matter.

Deterministic from --seed, no downloads (PIL, numpy and the standard library
only).  Writes WebDataset tar shards of rendered shape scenes:

  OUT/raw/captions/shard-NNNNNN.tar       KEY.jpg|KEY.png + KEY.txt, with dirt
  OUT/raw/conversations/shard-NNNNNN.tar  KEY.jpg|KEY.png + KEY.json (LLaVA turns)
  OUT/raw/text/shard-NNNNNN.tar           KEY.txt (prose about shapes, colours)
  OUT/eval/captions_dev/, captions_test/  clean: scene + its canonical caption
  OUT/eval/qa_dev/, qa_test/              clean: one question + one-word answer
  OUT/misaligned.txt                      keys of captions/ samples whose caption
                                          describes a different scene
  OUT/labels.tsv                          ground truth: key, kind, subtype
  OUT/synth.json                          seed, options, counts by kind of dirt

    synth.py --out DIR [--seed N] [--scale F] [--eval-samples N] [--shard-size N]
    synth.py --out DIR --check REJECTS_TSV   (what a filter run caught, by kind)

Scenes.  A canvas of 112..224 px a side (any aspect up to 2:1), a greyish
tint of any hue with a shading across it, holds one or two groups of 1-3
identical shapes (5 shapes, 6 colours, 2 sizes), at most 4 shapes in all.
One group sits in a region (on the left / on the right / at the top / at
the bottom / in the centre); two groups stand in a relation (to the left
of / to the right of / above / below) that holds for every pair of their
shapes.  The canonical caption says exactly that: "two small red circles
above a large blue square", "a large green star on the left".  Training
captions are canonical 60% of the time, else a paraphrase (a prefix such as
"a picture of", sizes left out, the relation turned round, a capital and a
full stop), always true.
Eval captions are canonical.

Dirt in the captions source (shares of its samples; `clean` is the rest).
Public audits of web alt-text sets (LAION, DataComp, CC) find duplicates in
the tens of percent, a long tail of boilerplate and file-name alt text,
language-ID leakage, pairs whose text is about something else, and a few
percent of broken or useless images; the shares below keep that shape,
scaled down so the clean part (58%) still dominates:

  exact_dup     8%  the same image bytes again; ~N/10 popular scenes, copies
                    Zipf-distributed (the most popular repeated ~50x at the
                    default scale); caption the same or another true one
  near_dup      7%  a re-encode of a clean scene: JPEG quality 35-70, a 2-5%
                    crop, a resize x0.6-0.9 or x1.25, or the PNG of the JPEG
  boilerplate   5%  stock-site text, shop calls to action, camera file names,
                    "no description available" and friends
  url_stuffed   3%  a URL only (empty once URLs are removed), a true caption
                    with SEO spam and URLs, or a true caption + a URL (which
                    `clean` repairs: expected kept)
  foreign       5%  a true description in German, French, Spanish, Chinese
  misaligned    6%  a fluent caption of a DIFFERENT scene (misaligned.txt)
  tiny          2%  the scene at 8..32 px a side
  blank         2%  one colour (a few with faint noise), plausible caption
  corrupt       2%  truncated JPEG, random bytes, zero bytes, HTML error page
  empty_caption 2%  empty KEY.txt, whitespace only, or no KEY.txt at all

After shuffling, the first sample of a duplicate cluster in stream order
counts as clean (dedup keeps the first seen); the rest are the duplicates.
Conversations (1-3 turns; 30% of them one-word answers) and text are clean.
Eval sets are clean and come from a separate seed (--eval-seed, default
seed + 1000003); their QA answers are one word ("two", "red", "yes").

--check reads a rejects TSV (`mvl filter ... --rejects FILE`) and prints,
per kind of dirt (per subtype with --subtypes), how many samples were
dropped and for which reasons.  The chain that catches what heuristics can
(everything but the misaligned pairs) on this data:
  clean,capfilter:min_words=3:boilerplate=1:lang=en:lang_min_conf=0.3,
  imgfilter:min_side=56:max_aspect=3:min_std=3,dedup
(the shortest true captions, "a red star", get English at ~0.4 confidence).
"""
import argparse
import colorsys
import io
import json
import math
import os
import random
import tarfile
import time

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle", "star", "diamond"]
COLOURS = {
    "red": (215, 35, 35), "green": (35, 160, 55), "blue": (40, 75, 215),
    "yellow": (240, 205, 30), "purple": (135, 50, 170), "orange": (245, 130, 20),
}
SIZES = {"small": (0.10, 0.12), "large": (0.18, 0.21)}  # radius / min side
NUM = {1: "one", 2: "two", 3: "three", 4: "four"}
RELS = ["to the left of", "to the right of", "above", "below"]
INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of",
           "above": "below", "below": "above"}
REGIONS = ["on the left", "on the right", "at the top", "at the bottom", "in the centre"]

DIRT = [  # kind, share of the captions source
    ("exact_dup", 0.08), ("near_dup", 0.07), ("boilerplate", 0.05),
    ("url_stuffed", 0.03), ("foreign", 0.05), ("misaligned", 0.06),
    ("tiny", 0.02), ("blank", 0.02), ("corrupt", 0.02), ("empty_caption", 0.02),
]
# what the filters are expected to do with each kind (for --check)
EXPECT = {
    "clean": "keep", "exact_dup": "dedup", "near_dup": "dedup",
    "boilerplate": "capfilter", "url_stuffed": "clean/capfilter (url_appended: keep)",
    "foreign": "capfilter lang", "misaligned": "keep (needs a model)",
    "tiny": "imgfilter", "blank": "imgfilter min_std", "corrupt": "imgfilter/ingest",
    "empty_caption": "clean/capfilter",
}

DEFAULT_COUNTS = {"captions": 2500, "conversations": 1000, "text": 500, "eval": 300}


# ---------------------------------------------------------------- scenes

def canvas_size(rng):
    if rng.random() < 0.3:
        s = rng.randint(112, 224)
        return s, s
    while True:
        w, h = rng.randint(112, 224), rng.randint(112, 224)
        if max(w, h) / min(w, h) <= 2.0:
            return w, h


def plural(shape, n):
    return shape if n == 1 else shape + "s"


def article(word):
    return "an" if word[0] in "aeiou" else "a"


class Group:
    def __init__(self, shape, colour, size, count):
        self.shape, self.colour, self.size, self.count = shape, colour, size, count
        self.objs = []  # (cx, cy, r)

    def phrase(self, with_size=True, article_one=True):
        words = ([self.size] if with_size else []) + [self.colour, plural(self.shape, self.count)]
        if self.count == 1:
            det = article(words[0]) if article_one else "one"
        else:
            det = NUM[self.count]
        return det + " " + " ".join(words)

    def ref(self, with_size=False):
        """'the red circle' / 'the small red circles'."""
        words = ([self.size] if with_size else []) + [self.colour, plural(self.shape, self.count)]
        return "the " + " ".join(words)


class Scene:
    """One or two groups of shapes; a region (one group) or a relation (two)."""

    def __init__(self, w, h, groups, region=None, rel=None, bg=None):
        self.w, self.h, self.groups, self.region, self.rel, self.bg = w, h, groups, region, rel, bg

    def caption(self, with_size=True):
        g = self.groups
        if len(g) == 1:
            return g[0].phrase(with_size) + " " + self.region
        return g[0].phrase(with_size) + " " + self.rel + " " + g[1].phrase(with_size)

    def count(self, shape=None, colour=None):
        return sum(x.count for x in self.groups
                   if (shape is None or x.shape == shape) and (colour is None or x.colour == colour))


def place_group(rng, g, w, h, box, taken):
    """Put g.count shapes of g's size with centres in box=(x0,y0,x1,y1), apart
    from each other and from taken; False if it does not fit."""
    m = min(w, h)
    lo, hi = SIZES[g.size]
    for _ in range(g.count):
        for _try in range(60):
            r = rng.uniform(lo, hi) * m
            x0, y0, x1, y1 = box
            x0, y0, x1, y1 = max(x0, r + 2), max(y0, r + 2), min(x1, w - r - 2), min(y1, h - r - 2)
            if x0 > x1 or y0 > y1:
                return False
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            er = r * (1.22 if g.shape == "square" else 1.0)  # a square's corners reach 1.22 r
            if all(math.hypot(cx - ox, cy - oy) > er + orr + 3 for ox, oy, orr in taken):
                taken.append((cx, cy, er))
                g.objs.append((cx, cy, r))
                break
        else:
            return False
    return True


def luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def random_scene(rng):
    for _attempt in range(200):
        w, h = canvas_size(rng)
        ngroups = 1 if rng.random() < 0.4 else 2
        groups, seen = [], set()
        total = 0
        for i in range(ngroups):
            while True:
                shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
                if (shape, colour) not in seen:
                    break
            seen.add((shape, colour))
            size = rng.choice(list(SIZES))
            cmax = 3 - total if ngroups == 2 and i == 0 else min(3, 4 - total)
            count = rng.choices([1, 2, 3][:max(1, cmax)], weights=[5, 3, 2][:max(1, cmax)])[0]
            total += count
            groups.append(Group(shape, colour, size, count))
        taken = []
        ok = True
        region = rel = None
        if ngroups == 1:
            g = groups[0]
            regions = REGIONS if g.count == 1 else REGIONS[:4]
            region = rng.choice(regions)
            box = {"on the left": (0, 0, 0.38 * w, h), "on the right": (0.62 * w, 0, w, h),
                   "at the top": (0, 0, w, 0.38 * h), "at the bottom": (0, 0.62 * h, w, h),
                   "in the centre": (0.42 * w, 0.42 * h, 0.58 * w, 0.58 * h)}[region]
            ok = place_group(rng, g, w, h, box, taken)
            if ok and region != "in the centre":  # the whole shape inside its half
                for cx, cy, r in g.objs:
                    if (region == "on the left" and cx + r > w / 2) or \
                       (region == "on the right" and cx - r < w / 2) or \
                       (region == "at the top" and cy + r > h / 2) or \
                       (region == "at the bottom" and cy - r < h / 2):
                        ok = False
        else:
            rel = rng.choice(RELS)
            a, b = groups
            horiz = rel in ("to the left of", "to the right of")
            first_low = rel in ("to the left of", "above")  # a on the low side
            lo_box = (0, 0, 0.5 * w, h) if horiz else (0, 0, w, 0.5 * h)
            hi_box = (0.5 * w, 0, w, h) if horiz else (0, 0.5 * h, w, h)
            ok = place_group(rng, a, w, h, lo_box if first_low else hi_box, taken) and \
                place_group(rng, b, w, h, hi_box if first_low else lo_box, taken)
            if ok:  # every shape of a strictly on its side of every shape of b
                ax = [(cx, cy, r) for cx, cy, r in a.objs]
                bx = [(cx, cy, r) for cx, cy, r in b.objs]
                lo, hi = (ax, bx) if first_low else (bx, ax)
                k = 0 if horiz else 1
                if max(o[k] + o[2] for o in lo) >= min(o[k] - o[2] for o in hi):
                    ok = False
        if not ok:
            continue
        # a greyish tint of any hue, light to mid-dark: never close to a shape colour
        # and with some luma contrast to every shape in the scene (imgfilter's
        # blank test is on luma, and so is a small ViT's first impression)
        while True:
            bg = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.2),
                                                                     rng.uniform(0.5, 0.97)))
            if all(abs(luma(bg) - luma(COLOURS[g.colour])) >= 30 for g in groups):
                break
        return Scene(w, h, groups, region, rel, bg)
    raise RuntimeError("could not place a scene")


def star_points(cx, cy, r, n=5, inner=0.45):
    pts = []
    for i in range(2 * n):
        a = -math.pi / 2 + i * math.pi / n
        rr = r if i % 2 == 0 else r * inner
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def render(scene, rng, ss=2):
    """The scene as an RGB image, drawn at ss x and downsampled (antialiased)."""
    W, H = scene.w * ss, scene.h * ss
    # shading across the sheet, in a random direction, as a photo of paper has
    a, amp = rng.uniform(0, 2 * math.pi), rng.uniform(4, 24)
    x = np.linspace(-0.5, 0.5, W, dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, H, dtype=np.float32)[:, None]
    ramp = amp * 2 * (math.cos(a) * x + math.sin(a) * y)
    arr = np.asarray(scene.bg, np.float32)[None, None, :] + ramp[:, :, None]
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for g in scene.groups:
        base = COLOURS[g.colour]
        for cx, cy, r in g.objs:
            col = tuple(max(0, min(255, v + rng.randint(-12, 12))) for v in base)
            cx, cy, r = cx * ss, cy * ss, r * ss
            if g.shape == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
            elif g.shape == "square":
                s = r * 0.86
                d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=col)
            elif g.shape == "triangle":
                d.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)], fill=col)
            elif g.shape == "star":
                d.polygon(star_points(cx, cy, r), fill=col)
            else:  # diamond: a rhombus on its point, taller than wide
                d.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=col)
    return im.resize((scene.w, scene.h), Image.BOX)


def encode(im, fmt="jpeg", quality=85):
    b = io.BytesIO()
    if fmt == "png":
        im.save(b, "PNG", optimize=False, compress_level=6)
    else:
        im.save(b, "JPEG", quality=quality)
    return b.getvalue()


def image_record(scene, rng, png_share=0.1):
    im = render(scene, rng)
    if rng.random() < png_share:
        return im, encode(im, "png"), "png"
    return im, encode(im, "jpeg", rng.choice([75, 80, 85])), "jpg"


# ---------------------------------------------------------------- captions

PREFIXES = ["a picture of {}", "an image of {}", "a drawing of {}", "an illustration of {}",
            "{} on a plain background", "this image shows {}", "a simple scene with {}"]


def paraphrase(scene, rng):
    """A true caption other than the canonical one."""
    with_size = rng.random() < 0.6
    g = scene.groups
    if len(g) == 2 and rng.random() < 0.5:
        core = g[1].phrase(with_size) + " " + INVERSE[scene.rel] + " " + g[0].phrase(with_size)
    else:
        core = scene.caption(with_size)
    if len(g) == 1 and rng.random() < 0.3:
        core = g[0].phrase(with_size)  # the region left out: still true
    r = rng.random()
    if r < 0.45:
        core = rng.choice(PREFIXES).format(core)
    elif r < 0.6:
        first = g[0] if not core.startswith(g[-1].phrase(with_size)) or len(g) == 1 else g[-1]
        verb = "is" if first.count == 1 else "are"
        core = "there " + verb + " " + core
    if rng.random() < 0.5:
        core = core[0].upper() + core[1:] + "."
    return core


def train_caption(scene, rng):
    return scene.caption() if rng.random() < 0.6 else paraphrase(scene, rng)


# ---------------------------------------------------------------- other languages

LANG = {
    "de": {
        "shape": {"circle": ("Kreis", "Kreise", "m"), "square": ("Quadrat", "Quadrate", "n"),
                  "triangle": ("Dreieck", "Dreiecke", "n"), "star": ("Stern", "Sterne", "m"),
                  "diamond": ("Raute", "Rauten", "f")},
        "colour": {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb",
                   "purple": "violett", "orange": "orangefarben"},
        "size": {"small": "klein", "large": "groß"},
        "num": {2: "zwei", 3: "drei"},
        "frames": ["Auf diesem Bild sieht man {} auf einem hellen Hintergrund.",
                   "Das Foto zeigt {} vor einem einfarbigen, hellen Hintergrund.",
                   "Man erkennt {} vor einem schlichten, hellen Hintergrund."],
    },
    "fr": {
        "shape": {"circle": ("cercle", "cercles", "m"), "square": ("carré", "carrés", "m"),
                  "triangle": ("triangle", "triangles", "m"), "star": ("étoile", "étoiles", "f"),
                  "diamond": ("losange", "losanges", "m")},
        "colour": {"red": ("rouge", "rouge", "rouges", "rouges"), "green": ("vert", "verte", "verts", "vertes"),
                   "blue": ("bleu", "bleue", "bleus", "bleues"), "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
                   "purple": ("violet", "violette", "violets", "violettes"),
                   "orange": ("orange", "orange", "orange", "orange")},
        "size": {"small": ("petit", "petite", "petits", "petites"), "large": ("grand", "grande", "grands", "grandes")},
        "num": {2: "deux", 3: "trois"},
        "frames": ["Sur cette image, on voit {} sur un fond clair.",
                   "La photo montre {} devant un fond uni et lumineux.",
                   "Voici {} sur un fond très simple et lumineux."],
    },
    "es": {
        "shape": {"circle": ("círculo", "círculos", "m"), "square": ("cuadrado", "cuadrados", "m"),
                  "triangle": ("triángulo", "triángulos", "m"), "star": ("estrella", "estrellas", "f"),
                  "diamond": ("rombo", "rombos", "m")},
        "colour": {"red": ("rojo", "roja", "rojos", "rojas"), "green": ("verde", "verde", "verdes", "verdes"),
                   "blue": ("azul", "azul", "azules", "azules"),
                   "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
                   "purple": ("morado", "morada", "morados", "moradas"),
                   "orange": ("naranja", "naranja", "naranjas", "naranjas")},
        "size": {"small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
                 "large": ("grande", "grande", "grandes", "grandes")},
        "num": {2: "dos", 3: "tres"},
        "frames": ["En esta imagen hay {} sobre un fondo claro.",
                   "La foto muestra {} delante de un fondo liso y luminoso.",
                   "Aquí tenemos {} sobre un fondo muy sencillo."],
    },
    "zh": {
        "shape": {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "五角星", "diamond": "菱形"},
        "colour": {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"},
        "size": {"small": "小", "large": "大"},
        "num": {1: "一个", 2: "两个", 3: "三个"},
        "frames": ["这张图片里有{}，背景是浅色的。", "画面中可以看到{}，背景非常简单干净。",
                   "图中画着{}，放在一块浅色的背景上。"],
    },
}


def foreign_phrase(lang, g):
    L = LANG[lang]
    n = g.count
    if lang == "zh":
        return L["num"][n] + L["size"][g.size] + "的" + L["colour"][g.colour] + L["shape"][g.shape]
    sing, plur, gen = L["shape"][g.shape]
    if lang == "de":
        adj_c, adj_s = L["colour"][g.colour], L["size"][g.size]
        if n == 1:  # accusative: every frame has the phrase as its object
            art, end = {"m": ("einen", "en"), "n": ("ein", "es"), "f": ("eine", "e")}[gen]
            return f"{art} {adj_s}{end} {adj_c}{end} {sing}"
        return f"{L['num'][n]} {adj_s}e {adj_c}e {plur}"
    idx = (0 if gen == "m" else 1) + (0 if n == 1 else 2)
    col, siz = L["colour"][g.colour][idx], L["size"][g.size][idx]
    art = {"fr": ("un", "une"), "es": ("un", "una")}[lang][0 if gen == "m" else 1]
    det = art if n == 1 else L["num"][n]
    if lang == "fr":  # petit/grand before the noun in French
        return f"{det} {siz} {plur if n > 1 else sing} {col}"
    return f"{det} {plur if n > 1 else sing} {col} {siz}"


def foreign_caption(scene, rng):
    lang = rng.choice(["de", "fr", "es", "zh"])
    parts = [foreign_phrase(lang, g) for g in scene.groups]
    joiner = {"de": " und ", "fr": " et ", "es": " y ", "zh": "和"}[lang]
    return lang, rng.choice(LANG[lang]["frames"]).format(joiner.join(parts))


# ---------------------------------------------------------------- boilerplate

def boilerplate_caption(rng):
    n = rng.randint(1000, 99999)
    sub = rng.choice(["stock", "shop", "filename", "generic"])
    if sub == "stock":
        t = rng.choice(["stock photo image {n}", "Stock Photo - colorful geometric shapes background. Image {n}",
                        "Royalty-free vector illustration of simple shapes #{n}",
                        "abstract shapes pattern - shutterstock {n}", "Geometric shapes stock images, photo id {n}",
                        "colourful shapes, all rights reserved {n}"])
    elif sub == "shop":
        t = rng.choice(["Click here to buy! Shapes poster {n}", "Buy now: geometric kids wall art, free shipping",
                        "Add to cart - shape sorting toy set {n}", "Shop now and save 20% on shape stickers!",
                        "Click to enlarge", "Quick view"])
    elif sub == "filename":
        t = rng.choice(["IMG_{n}.JPG", "DSC{n:05d}", "image-{n}.png", "PXL_2021{n:05d}", "shapes_final_{n}.jpg",
                        "Screenshot 2020-{m:02d}-{d:02d}"])
    else:
        t = rng.choice(["no description available", "image", "untitled", "Image may contain: shapes",
                        "thumbnail", "placeholder image", "loading..."])
    return sub, t.format(n=n, m=rng.randint(1, 12), d=rng.randint(1, 28))


def url(rng):
    host = rng.choice(["shop.example.com", "cdn.example.net", "www.example-store.com", "img.example.org",
                       "bit.ly", "www.free-clipart.example"])
    path = rng.choice(["/item/{n}", "/uploads/2019/{m:02d}/shapes_{n}.jpg", "/p?id={n}&ref=img", "/{h}",
                       "/gallery/{n}/view"])
    return rng.choice(["http://", "https://"]) + host + path.format(
        n=rng.randint(100, 999999), m=rng.randint(1, 12), h="%08x" % rng.getrandbits(32))


def url_caption(scene, rng):
    sub = rng.choice(["url_only", "url_spam", "url_appended"])
    if sub == "url_only":
        return sub, url(rng)
    cap = train_caption(scene, rng)
    if sub == "url_spam":
        spam = rng.choice(["free download", "shapes clipart free download", "buy now", "click here",
                           "hd wallpapers", "best 50 shape ideas"])
        return sub, f"{cap} {url(rng)} {spam} {url(rng)} {spam}"
    return sub, f"{cap} {url(rng)}"


# ---------------------------------------------------------------- conversations

def colour_word(rng):
    return "colour" if rng.random() < 0.7 else "color"


def questions(scene, rng, short):
    """Candidate (question, answer) pairs about the scene; short: one-word answers."""
    qs = []
    g = scene.groups
    one = " Answer with a single word."
    yn = " Answer yes or no."
    # counts by shape (present or absent)
    shape = rng.choice([x.shape for x in g] if rng.random() < 0.7 else SHAPES)
    n = scene.count(shape=shape)
    if short:
        qs.append((f"How many {shape}s are there?" + one, NUM.get(n, "zero") if n else "zero"))
    else:
        a = f"There are no {shape}s." if n == 0 else \
            f"There is one {shape}." if n == 1 else f"There are {NUM[n]} {shape}s."
        qs.append((f"How many {shape}s are there?", a))
    # counts by colour
    colour = rng.choice([x.colour for x in g] if rng.random() < 0.7 else list(COLOURS))
    n = scene.count(colour=colour)
    if short:
        qs.append((f"How many {colour} shapes are there?" + one, NUM[n] if n else "zero"))
    else:
        a = f"There are no {colour} shapes." if n == 0 else \
            f"There is one {colour} shape." if n == 1 else f"There are {NUM[n]} {colour} shapes."
        qs.append((f"How many {colour} shapes are in the image?", a))
    # total
    n = scene.count()
    qs.append(("How many shapes are there in total?" + (one if short else ""),
               NUM[n] if short else ("There is one shape." if n == 1 else f"There are {NUM[n]} shapes.")))
    # colour of a shape that only one group has
    for x in g:
        if sum(y.shape == x.shape for y in g) == 1:
            cw = colour_word(rng)
            if x.count == 1:
                q, a = f"What {cw} is the {x.shape}?", f"The {x.shape} is {x.colour}."
            else:
                q, a = f"What {cw} are the {x.shape}s?", f"The {x.shape}s are {x.colour}."
            qs.append((q + one, x.colour) if short else (q, a))
    # shape of a colour that only one group has
    for x in g:
        if sum(y.colour == x.colour for y in g) == 1:
            if x.count == 1:
                q, a = f"What shape is the {x.colour} object?", f"It is {article(x.shape)} {x.shape}."
            else:
                q, a = f"What shape are the {x.colour} objects?", f"They are {x.shape}s."
            qs.append((q + one, x.shape) if short else (q, a))
    # size
    x = rng.choice(g)
    is_ = "Is" if x.count == 1 else "Are"
    q = f"{is_} {x.ref()} small or large?"
    a = ("It is " if x.count == 1 else "They are ") + x.size + "."
    qs.append((q + one, x.size) if short else (q, a))
    # existence
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    if rng.random() < 0.5:
        y = rng.choice(g)
        shape, colour = y.shape, y.colour
    n = scene.count(shape=shape, colour=colour)
    q = f"Is there {article(colour)} {colour} {shape} in the image?"
    if short:
        qs.append((q + yn, "yes" if n else "no"))
    else:
        a = f"No, there is no {colour} {shape}." if n == 0 else \
            f"Yes, there is one {colour} {shape}." if n == 1 else f"Yes, there are {NUM[n]} {colour} {shape}s."
        qs.append((q, a))
    # relation
    if len(g) == 2:
        a_, b_ = g if rng.random() < 0.5 else (g[1], g[0])
        rel = scene.rel if a_ is g[0] else INVERSE[scene.rel]
        be = "is" if a_.count == 1 else "are"
        horiz = rel in ("to the left of", "to the right of")
        asked = rng.choice(["to the left of", "to the right of"] if horiz else ["above", "below"])
        q = f"{be.capitalize()} {a_.ref()} {asked} {b_.ref()}?"
        if short:
            qs.append((q + yn, "yes" if asked == rel else "no"))
            word = {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}[rel]
            opts = "to the left or to the right of" if horiz else "above or below"
            qs.append((f"{be.capitalize()} {a_.ref()} {opts} {b_.ref()}?" + one, word))
        else:
            a = f"Yes, {a_.ref()} {be} {rel} {b_.ref()}." if asked == rel else \
                f"No, {a_.ref()} {be} {rel} {b_.ref()}."
            qs.append((q, a))
            qs.append((f"Where {be} {a_.ref()} relative to {b_.ref()}?",
                       f"{a_.ref().capitalize()} {be} {rel} {b_.ref()}."))
    elif not short:
        x = g[0]
        be = "is" if x.count == 1 else "are"
        qs.append((f"Where {be} {x.ref()}?", f"{x.ref().capitalize()} {be} {scene.region}."))
    if not short:
        cap = scene.caption()
        qs.append((rng.choice(["Describe the image briefly.", "What is in this picture?",
                               "Give a short description of the image."]),
                   cap[0].upper() + cap[1:] + "."))
    return qs


def conversation(scene, rng, nturns, short_share=0.3):
    short = rng.random() < short_share
    qs = questions(scene, rng, short)
    rng.shuffle(qs)
    turns = []
    for i, (q, a) in enumerate(qs[:nturns]):
        turns.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + q})
        turns.append({"from": "gpt", "value": a})
    return {"conversations": turns}


# ---------------------------------------------------------------- text

SHAPE_FACTS = {
    "circle": ["A circle is round and has no corners.", "Every point on a circle is the same distance from its centre.",
               "A circle has no straight sides.", "Wheels and coins are shaped like circles."],
    "square": ["A square has four equal sides and four corners.", "All four corners of a square are right angles.",
               "A square is a rectangle whose sides are all the same length.", "Many windows and tiles are squares."],
    "triangle": ["A triangle has three sides and three corners.", "The corners of a triangle add up to half a turn.",
                 "A slice of pizza often looks like a triangle.", "A triangle with three equal sides is called equilateral."],
    "star": ["The star in these pictures has five points.", "A star shape has points that stick out like rays.",
             "Between the points of a star there are inner corners.", "People often draw a star with five points."],
    "diamond": ["A diamond is a shape with four equal sides standing on one corner.",
                "A diamond looks like a square turned on its point.", "A diamond is taller than it is wide in these pictures.",
                "The diamond on a playing card is red."],
}
COLOUR_FACTS = {
    "red": ["Strawberries and tomatoes are red.", "Red is the colour of a stop sign."],
    "green": ["Grass and leaves are green.", "Blue and yellow paint mixed together make green."],
    "blue": ["The sky on a clear day is blue.", "Blue is the colour of the sea in many pictures."],
    "yellow": ["Bananas and lemons are yellow.", "The sun is often drawn yellow."],
    "purple": ["Red and blue paint mixed together make purple.", "Grapes and plums can be purple."],
    "orange": ["Red and yellow paint mixed together make orange.", "Carrots and oranges are orange."],
}


def text_doc(rng):
    kind = rng.random()
    sents = []
    if kind < 0.4:  # a described scene, in prose
        s = random_scene(rng)
        cap = s.caption()
        sents.append(rng.choice(["In this picture there is ", "The drawing shows ", "Look at the picture: there is "])
                     + cap + ".")
        for g in s.groups:
            be = "is" if g.count == 1 else "are"
            sents.append(f"{g.ref().capitalize()} {be} {g.size}.")
            sents.append(f"{g.ref().capitalize()} {be} {g.colour}.")
        if len(s.groups) == 2:
            a, b = s.groups
            sents.append(f"{b.ref().capitalize()} {'is' if b.count == 1 else 'are'} "
                         f"{INVERSE[s.rel]} {a.ref()}.")
        n = s.count()
        sents.append(f"Altogether there {'is one shape' if n == 1 else 'are ' + NUM[n] + ' shapes'}.")
    elif kind < 0.7:  # about shapes
        for shape in rng.sample(SHAPES, rng.randint(1, 3)):
            sents += rng.sample(SHAPE_FACTS[shape], rng.randint(1, 3))
    else:  # about colours, and counting
        for colour in rng.sample(list(COLOURS), rng.randint(2, 4)):
            sents += rng.sample(COLOUR_FACTS[colour], rng.randint(1, 2))
        a, b = rng.randint(1, 2), rng.randint(1, 2)
        shape = rng.choice(SHAPES)
        sents.append(f"If you have {NUM[a]} {plural(shape, a)} and add {NUM[b]} more, "
                     f"there are {NUM[a + b]} {shape}s.")
    return " ".join(sents)


# ---------------------------------------------------------------- shards

class ShardWriter:
    """Plain WebDataset tars, shard-000000.tar ..., byte-for-byte deterministic."""

    def __init__(self, d, shard_size):
        self.d, self.size, self.n, self.shard, self.t = d, shard_size, 0, 0, None
        self.bytes = 0
        os.makedirs(d, exist_ok=True)

    def write(self, key, members):
        if self.t is None or self.n >= self.size:
            self.close()
            path = os.path.join(self.d, "shard-%06d.tar" % self.shard)
            self.shard += 1
            self.n = 0
            self.t = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)
            self.path = path
        for ext, data in members:
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size, ti.mtime, ti.mode = len(data), 1700000000, 0o644
            ti.uname = ti.gname = ""
            self.t.addfile(ti, io.BytesIO(data))
        self.n += 1

    def close(self):
        if self.t is not None:
            self.t.close()
            self.bytes += os.path.getsize(self.path)
            self.t = None


# ---------------------------------------------------------------- the captions source

def near_variant(im, ext, rng):
    sub = rng.choice(["requality", "crop", "resize"] + (["png"] if ext == "jpg" else []))
    w, h = im.size
    if sub == "requality":
        return sub, encode(im, "jpeg", rng.randint(35, 70)), "jpg"
    if sub == "crop":
        f = rng.uniform(0.02, 0.05)
        dx, dy = max(1, int(w * f)), max(1, int(h * f))
        l, t = rng.randint(0, dx), rng.randint(0, dy)
        return sub, encode(im.crop((l, t, w - (dx - l), h - (dy - t))), "jpeg", 85), "jpg"
    if sub == "resize":
        s = rng.choice([rng.uniform(0.6, 0.9), 1.25])
        return sub, encode(im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS), "jpeg", 85), "jpg"
    return sub, encode(im, "png"), "png"


def zipf_split(total, k, rng):
    w = [1.0 / (i + 1) for i in range(k)]
    s = sum(w)
    n = [max(1, int(total * x / s)) for x in w]
    i = 0
    while sum(n) < total:
        n[i % k] += 1
        i += 1
    while sum(n) > total:
        j = max(range(k), key=lambda j: n[j])
        n[j] -= 1
    return n


def make_captions(rng, N):
    plan = {k: max(1, round(N * f)) for k, f in DIRT}
    n_clean = N - sum(plan.values())
    recs = []  # dict(kind, sub, img, ext, cap, cluster)

    def clean_rec():
        s = random_scene(rng)
        im, data, ext = image_record(s, rng)
        return {"kind": "clean", "sub": "-", "img": data, "ext": ext, "cap": train_caption(s, rng),
                "cluster": None, "scene": s, "im": im}

    for _ in range(n_clean):
        recs.append(clean_rec())
    # exact duplicates: popular scenes repeated, Zipf
    pool = list(range(len(recs)))
    rng.shuffle(pool)
    k = max(1, min(len(pool) // 4, round(plan["exact_dup"] / 10)))
    heads, pool = pool[:k], pool[k:]
    for ci, (h, n) in enumerate(zip(heads, zipf_split(plan["exact_dup"], k, rng))):
        head = recs[h]
        head["cluster"] = ("x", ci)
        for _ in range(n):
            cap = head["cap"] if rng.random() < 0.6 else train_caption(head["scene"], rng)
            recs.append({"kind": "exact_dup", "sub": "same_caption" if cap == head["cap"] else "other_caption",
                         "img": head["img"], "ext": head["ext"], "cap": cap, "cluster": ("x", ci)})
    # near duplicates: 1-2 re-encodes of a clean scene
    need, ci = plan["near_dup"], 0
    while need > 0 and pool:
        head = recs[pool.pop()]
        head["cluster"] = ("n", ci)
        for _ in range(min(need, rng.choice([1, 1, 2]))):
            sub, data, ext = near_variant(head["im"], head["ext"], rng)
            recs.append({"kind": "near_dup", "sub": sub, "img": data, "ext": ext,
                         "cap": train_caption(head["scene"], rng), "cluster": ("n", ci)})
            need -= 1
        ci += 1
    for _ in range(plan["boilerplate"]):
        r = clean_rec()
        r["kind"], (r["sub"], r["cap"]) = "boilerplate", boilerplate_caption(rng)
        recs.append(r)
    for _ in range(plan["url_stuffed"]):
        r = clean_rec()
        r["kind"], (r["sub"], r["cap"]) = "url_stuffed", url_caption(r["scene"], rng)
        recs.append(r)
    for _ in range(plan["foreign"]):
        r = clean_rec()
        r["kind"], (r["sub"], r["cap"]) = "foreign", foreign_caption(r["scene"], rng)
        recs.append(r)
    for _ in range(plan["misaligned"]):
        r = clean_rec()
        while True:
            other = random_scene(rng)
            if other.caption(False) != r["scene"].caption(False):
                break
        r["kind"], r["cap"] = "misaligned", train_caption(other, rng)
        r["sub"] = "canonical" if r["cap"] == other.caption() else "paraphrase"
        recs.append(r)
    for _ in range(plan["tiny"]):
        r = clean_rec()
        side = rng.choice([8, 12, 16, 24, 32])
        w, h = r["im"].size
        sc = side / min(w, h)
        small = r["im"].resize((max(1, round(w * sc)), max(1, round(h * sc))), Image.BOX)
        fmt = "png" if rng.random() < 0.3 else "jpeg"
        r.update(kind="tiny", sub=f"{side}px", img=encode(small, fmt, 85), ext="png" if fmt == "png" else "jpg")
        recs.append(r)
    for _ in range(plan["blank"]):
        r = clean_rec()
        w, h = canvas_size(rng)
        col = tuple(rng.randint(0, 255) for _ in range(3)) if rng.random() < 0.5 else \
            rng.choice([(255, 255, 255), (0, 0, 0), (250, 250, 250), (128, 128, 128)])
        arr = np.empty((h, w, 3), np.float32)
        arr[:] = col
        sub = "solid"
        if rng.random() < 0.3:  # faint sensor-like noise, std ~1 level
            nrng = np.random.default_rng(rng.getrandbits(32))
            arr += nrng.normal(0, 1.0, arr.shape)
            sub = "noise"
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        fmt = "png" if rng.random() < 0.3 else "jpeg"
        r.update(kind="blank", sub=sub, img=encode(im, fmt, 85), ext="png" if fmt == "png" else "jpg")
        recs.append(r)
    for _ in range(plan["corrupt"]):
        r = clean_rec()
        sub = rng.choice(["truncated", "truncated", "random_bytes", "zero_bytes", "html"])
        if sub == "truncated":
            jp = encode(r["im"], "jpeg", 85)
            data = jp[: int(len(jp) * rng.uniform(0.3, 0.7))]
        elif sub == "random_bytes":
            data = rng.randbytes(rng.randint(200, 4000))
        elif sub == "zero_bytes":
            data = b""
        else:
            data = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
        r.update(kind="corrupt", sub=sub, img=data, ext="jpg")
        recs.append(r)
    for _ in range(plan["empty_caption"]):
        r = clean_rec()
        sub = rng.choice(["empty", "whitespace", "missing"])
        r.update(kind="empty_caption", sub=sub, cap={"empty": "", "whitespace": rng.choice([" ", "  \n", "\t \t"]),
                                                      "missing": None}[sub])
        recs.append(r)
    rng.shuffle(recs)
    # the first of a duplicate cluster in stream order is the one dedup keeps
    seen = set()
    for r in recs:
        c = r["cluster"]
        if c is None:
            continue
        if c not in seen:
            seen.add(c)
            if r["kind"] != "clean":
                r["sub"], r["kind"] = "first_seen_" + r["kind"], "clean"
        elif r["kind"] == "clean":
            r["kind"], r["sub"] = {"x": "exact_dup", "n": "near_dup"}[c[0]], "original_after_copy"
    return recs, plan


# ---------------------------------------------------------------- main

def generate(args):
    t0 = time.time()
    out = args.out
    s = args.scale
    cnt = {k: max(1, round(v * s)) for k, v in DEFAULT_COUNTS.items()}
    if args.eval_samples:
        cnt["eval"] = args.eval_samples
    rng = random.Random(args.seed)
    info = {"seed": args.seed, "eval_seed": args.eval_seed, "scale": s, "shard_size": args.shard_size,
            "generator": "scripts/synth.py", "planned_shares": dict(DIRT), "sources": {}}

    # captions
    recs, plan = make_captions(random.Random(rng.getrandbits(64)), cnt["captions"])
    w = ShardWriter(os.path.join(out, "raw", "captions"), args.shard_size)
    labels, mis = [], []
    by_kind, by_sub = {}, {}
    for i, r in enumerate(recs):
        key = "cap%07d" % i
        members = [(r["ext"], r["img"])]
        if r["cap"] is not None:
            members.append(("txt", r["cap"].encode("utf-8")))
        w.write(key, members)
        labels.append((key, r["kind"], r["sub"]))
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
        by_sub.setdefault(r["kind"], {})
        by_sub[r["kind"]][r["sub"]] = by_sub[r["kind"]].get(r["sub"], 0) + 1
        if r["kind"] == "misaligned":
            mis.append(key)
    w.close()
    fmt = {}
    for r in recs:
        fmt[r["ext"]] = fmt.get(r["ext"], 0) + 1
    info["sources"]["captions"] = {"samples": len(recs), "shards": w.shard, "bytes": w.bytes,
                                   "by_kind": by_kind, "by_subtype": by_sub, "image_ext": fmt}
    del recs

    # conversations
    crng = random.Random(rng.getrandbits(64))
    w = ShardWriter(os.path.join(out, "raw", "conversations"), args.shard_size)
    turns = {}
    for i in range(cnt["conversations"]):
        sc = random_scene(crng)
        _, data, ext = image_record(sc, crng)
        nt = crng.choices([1, 2, 3], weights=[3, 4, 3])[0]
        conv = conversation(sc, crng, nt)
        n = len(conv["conversations"]) // 2
        turns[n] = turns.get(n, 0) + 1
        w.write("conv%07d" % i, [(ext, data), ("json", json.dumps(conv, ensure_ascii=False).encode())])
    w.close()
    info["sources"]["conversations"] = {"samples": cnt["conversations"], "shards": w.shard, "bytes": w.bytes,
                                        "by_turns": {str(k): v for k, v in sorted(turns.items())}}

    # text
    trng = random.Random(rng.getrandbits(64))
    w = ShardWriter(os.path.join(out, "raw", "text"), args.shard_size)
    for i in range(cnt["text"]):
        w.write("text%07d" % i, [("txt", text_doc(trng).encode())])
    w.close()
    info["sources"]["text"] = {"samples": cnt["text"], "shards": w.shard, "bytes": w.bytes}

    # eval: a separate seed, clean
    erng = random.Random(args.eval_seed)
    info["eval"] = {}
    for split in ["captions_dev", "captions_test", "qa_dev", "qa_test"]:
        srng = random.Random(erng.getrandbits(64))
        w = ShardWriter(os.path.join(out, "eval", split), args.shard_size)
        answers = {}
        for i in range(cnt["eval"]):
            sc = random_scene(srng)
            _, data, ext = image_record(sc, srng)
            key = "%s%06d" % (split.replace("_", ""), i)
            if split.startswith("captions"):
                w.write(key, [(ext, data), ("txt", sc.caption().encode())])
            else:
                q, a = srng.choice(questions(sc, srng, short=True))
                conv = {"conversations": [{"from": "human", "value": "<image>\n" + q}, {"from": "gpt", "value": a}]}
                answers[a] = answers.get(a, 0) + 1
                w.write(key, [(ext, data), ("json", json.dumps(conv).encode())])
        w.close()
        info["eval"][split] = {"samples": cnt["eval"], "shards": w.shard, "bytes": w.bytes}
        if answers:
            info["eval"][split]["answers"] = dict(sorted(answers.items(), key=lambda x: -x[1]))

    with open(os.path.join(out, "misaligned.txt"), "w") as f:
        f.write("".join(k + "\n" for k in mis))
    with open(os.path.join(out, "labels.tsv"), "w") as f:
        f.write("# key\tkind\tsubtype\n")
        f.write("".join("%s\t%s\t%s\n" % x for x in labels))
    total = sum(v["bytes"] for v in info["sources"].values()) + sum(v["bytes"] for v in info["eval"].values())
    info["total_bytes"] = total
    info["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(out, "synth.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")

    c = info["sources"]["captions"]
    print(f"synth: seed {args.seed} (eval seed {args.eval_seed}), scale {s}, into {out}")
    print(f"  raw/captions       {c['samples']:6d} samples {c['shards']:3d} shards {c['bytes'] / 1e6:6.2f} MB"
          f"  (images: {', '.join(f'{k} {v}' for k, v in sorted(fmt.items()))})")
    for name in ["conversations", "text"]:
        v = info["sources"][name]
        print(f"  raw/{name:<14} {v['samples']:6d} samples {v['shards']:3d} shards {v['bytes'] / 1e6:6.2f} MB")
    for name, v in info["eval"].items():
        print(f"  eval/{name:<13} {v['samples']:6d} samples {v['shards']:3d} shards {v['bytes'] / 1e6:6.2f} MB")
    print(f"  total {total / 1e6:.2f} MB in {info['seconds']} s")
    print("  captions by kind (planned share -> realized):")
    shares = dict(DIRT)
    for kind in ["clean"] + [k for k, _ in DIRT]:
        n = by_kind.get(kind, 0)
        subs = ", ".join(f"{k} {v}" for k, v in sorted(by_sub.get(kind, {}).items()))
        planned = shares.get(kind, 1 - sum(shares.values()))
        print(f"    {kind:<14} {planned * 100:5.1f}% -> {n:5d} {100 * n / c['samples']:5.1f}%   {subs}")


def check(args):
    lab = {}
    with open(os.path.join(args.out, "labels.tsv")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            k, kind, sub = line.rstrip("\n").split("\t")
            lab[k] = (kind, sub)
    rej = {}
    with open(args.check) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            p = line.rstrip("\n").split("\t")
            k = p[0]
            if k not in lab:  # a key with a prefix (SOURCE/EPOCH/KEY) or a path
                k = k.rsplit("/", 1)[-1]
            if k in lab and k not in rej:
                rej[k] = p[2] if len(p) > 2 else "?"
    kinds = ["clean"] + [k for k, _ in DIRT]
    print(f"{'kind':<22} {'n':>5} {'dropped':>8} {'%':>6}  {'expected':<36} reasons")
    for kind in kinds:
        keys = [k for k, v in lab.items() if v[0] == kind]
        if not keys:
            continue
        d = [rej[k] for k in keys if k in rej]
        reasons = {}
        for r in d:
            reasons[r] = reasons.get(r, 0) + 1
        rs = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        print(f"{kind:<22} {len(keys):5d} {len(d):8d} {100 * len(d) / len(keys):5.1f}%  {EXPECT[kind]:<36} {rs}")
        if args.subtypes:
            subs = sorted({lab[k][1] for k in keys})
            for sub in subs:
                sk = [k for k in keys if lab[k][1] == sub]
                sd = [rej[k] for k in sk if k in rej]
                sr = {}
                for r in sd:
                    sr[r] = sr.get(r, 0) + 1
                print(f"  {sub:<20} {len(sk):5d} {len(sd):8d} {100 * len(sd) / len(sk):5.1f}%  {'':<36} "
                      + ", ".join(f"{r} {n}" for r, n in sorted(sr.items(), key=lambda x: -x[1])))
    dirty = [k for k, v in lab.items() if v[0] not in ("clean",) and v[1] != "url_appended"]
    caught = sum(1 for k in dirty if k in rej)
    fp = sum(1 for k, v in lab.items() if k in rej and (v[0] == "clean" or v[1] == "url_appended"))
    print(f"all dirt (less url_appended, which clean repairs): {caught}/{len(dirty)} dropped "
          f"({100 * caught / max(1, len(dirty)):.1f}%); clean samples dropped: {fp}")
    mis = [k for k, v in lab.items() if v[0] == "misaligned"]
    m = sum(1 for k in mis if k in rej)
    print(f"misaligned pairs dropped by heuristics: {m}/{len(mis)} (the model-based pairscore filter's job)")
    extra = [k for k in rej if k not in lab]
    if extra:
        print(f"rejects with keys not in labels.tsv: {len(extra)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the raw sources (default 1)")
    ap.add_argument("--eval-seed", type=int, default=None, help="seed of the eval sets (default seed + 1000003)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every count (1: 2500 captions, 1000 conversations, 500 texts, 300 per eval split)")
    ap.add_argument("--shard-size", type=int, default=500, help="samples per shard (default 500)")
    ap.add_argument("--eval-samples", type=int, default=0,
                    help="samples per eval split (default: 300 x scale); a small train set can have a large eval set")
    ap.add_argument("--check", metavar="REJECTS_TSV",
                    help="compare a rejects TSV (mvl filter --rejects) with OUT/labels.tsv; generate nothing")
    ap.add_argument("--subtypes", action="store_true", help="with --check: a line per subtype of dirt")
    args = ap.parse_args()
    if args.check:
        check(args)
        return
    if args.scale <= 0 or args.shard_size < 1:
        ap.error("--scale must be > 0 and --shard-size >= 1")
    if args.eval_seed is None:
        args.eval_seed = args.seed + 1000003
    if args.eval_seed == args.seed:
        ap.error("--eval-seed must differ from --seed")
    generate(args)


if __name__ == "__main__":
    main()
