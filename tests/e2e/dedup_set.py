"""dedup_set: a labelled near-duplicate image set, made here, for measuring
near-duplicate image detection (issue 4).

Everything is drawn deterministically with PIL and numpy from a seed (no
downloads) and encoded by PIL, as real files are.  Base pictures of four
families, 64 to 800 pixels a side:

  photo   smooth colour gradients, soft blobs and shapes, a striped or
          noisy texture, sensor-like noise
  emoji   a round face with eyes and a mouth, flat colours with an
          outline, on a transparent or a white background
  logo    a flat badge: a mark (circle, triangle or square) and blocky
          text in two or three flat colours
  icon    a flat pictogram (bell, house, heart, disc) on white

Pairs, each (name_a, path_a, name_b, path_b, label, kind), label 1 for a
duplicate (b is a transformed copy of a) and 0 for two distinct pictures:

  duplicates, "easy" (re-encoding, format change, resizing):
    jpeg_q95 jpeg_q75 jpeg_q50   JPEG of the original (alpha on white)
    webp_lossy webp_lossless     WebP q80 / lossless (alpha kept)
    png_alpha png_rgb            PNG with an alpha channel / without
    png_palette                  PNG with a 256-colour palette
    resize_half resize_up resize_224   50%, 200% (at most 1024), fit 224
    resize_jpeg                  fit 224 and JPEG q75 (a typical thumbnail)
  duplicates, harder:
    crop_2 crop_4                2% / 4% cut from every edge
    crop_3_corner                3% cut from the top and the left only
    brighter darker              brightness x1.1 / x0.9
  distinct look-alikes (label 0):
    emoji_tone       the same face in another tone (yellow, 5 skin tones)
    emoji_eye        the same face with one eye closed
    emoji_mouth      the same face frowning instead of smiling
    logo_recolour    the same badge in another colour scheme
    icon_detail      a bell with and without its notification dot
    icon_colour      the same pictogram in another colour
    shape_moved      the same disc at another place
    photo_other      another picture from the photo generator
  Each distinct pair also comes re-encoded (a as JPEG q75, b as WebP),
  with the same kind: look-alikes must stay apart after lossy coding.

KNOWN_MISSES names the kinds of distinct pairs that mvl's signature (a
64-bit pHash and a 4x4 RGB thumbnail) cannot tell apart, kept in the set so
that the limit stays measured: a smile turned into a frown moves a thin
stroke, 2-6 pHash bits and a thumbnail distance of 2-4, as much as a JPEG
re-encoding does (scripts/eval_phash.py reports them).

make_set(outdir, seed=0) writes the files under outdir and returns the
pairs.  As a command: dedup_set.py OUTDIR [--seed N] writes them and
OUTDIR/pairs.tsv, one pair a line.
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

WHITE = (255, 255, 255)

# emoji face colours: the default yellow and the five skin-tone modifiers
# (U+1F3FB..U+1F3FF) as common emoji fonts draw them
TONES = [("yellow", (255, 204, 77)), ("tone1", (247, 222, 206)), ("tone2", (243, 210, 162)),
         ("tone3", (213, 171, 136)), ("tone4", (175, 126, 87)), ("tone5", (124, 83, 62))]

LOGO_SCHEMES = [((29, 78, 216), (255, 255, 255), (250, 204, 21)),   # blue, white, gold
                ((220, 38, 38), (255, 255, 255), (31, 41, 55)),     # red, white, slate
                ((22, 163, 74), (17, 24, 39), (255, 255, 255)),     # green, black, white
                ((234, 88, 12), (30, 58, 138), (255, 255, 255))]    # orange, navy, white

EASY_KINDS = ("jpeg_q95", "jpeg_q75", "jpeg_q50", "webp_lossy", "webp_lossless", "png_alpha",
              "png_rgb", "png_palette", "resize_half", "resize_up", "resize_224", "resize_jpeg")
HARD_KINDS = ("crop_2", "crop_4", "crop_3_corner", "brighter", "darker")
KNOWN_MISSES = ("emoji_mouth",)


# ---------------------------------------------------------------------------
# base pictures

def _ss(draw_fn, w, h, mode, bg, scale=4):
    """Draws at `scale` times the size and shrinks (antialiased edges, as
    real icons have)."""
    im = Image.new(mode, (w * scale, h * scale), bg)
    draw_fn(ImageDraw.Draw(im), scale)
    return im.resize((w, h), Image.LANCZOS)


def photo(rng, w, h):
    """A photo-like picture: gradient, soft colour field, blobs and shapes,
    a texture patch and noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    c = rng.uniform(0, 255, (4, 3)).astype(np.float32)
    img = (c[0] * ((1 - u) * (1 - v))[..., None] + c[1] * (u * (1 - v))[..., None] +
           c[2] * ((1 - u) * v)[..., None] + c[3] * (u * v)[..., None])
    # a smooth colour field: a few random cells, upsampled bicubically
    g = rng.uniform(-60, 60, (5, 5, 3)).astype(np.float32)
    field = np.stack([np.asarray(Image.fromarray(g[..., k]).resize((w, h), Image.BICUBIC))
                      for k in range(3)], -1)
    img = np.clip(img + field, 0, 255)
    base = Image.fromarray(img.astype(np.uint8), "RGB")
    over = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    s = min(w, h)
    for _ in range(rng.randint(3, 8)):
        col = tuple(int(t) for t in rng.randint(0, 256, 3)) + (int(rng.randint(140, 256)),)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.06, 0.3) * s
        kind = rng.randint(3)
        if kind == 0:
            d.ellipse([cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r], fill=col)
        elif kind == 1:
            d.rectangle([cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r], fill=col)
        else:
            pts = [(cx + r * np.cos(a), cy + r * np.sin(a))
                   for a in np.sort(rng.uniform(0, 2 * np.pi, rng.randint(3, 7)))]
            d.polygon(pts, fill=col)
    over = over.filter(ImageFilter.GaussianBlur(max(0.5, s / 250)))
    base = Image.alpha_composite(base.convert("RGBA"), over).convert("RGB")
    a = np.asarray(base).astype(np.float32)
    # texture: stripes in one region
    x0, y0 = int(rng.uniform(0, 0.6) * w), int(rng.uniform(0, 0.6) * h)
    x1, y1 = x0 + int(rng.uniform(0.2, 0.4) * w), y0 + int(rng.uniform(0.2, 0.4) * h)
    period, ang = rng.uniform(3, 9), rng.uniform(0, np.pi)
    stripes = 25 * np.sin((x * np.cos(ang) + y * np.sin(ang)) * 2 * np.pi / period)
    a[y0:y1, x0:x1] += stripes[y0:y1, x0:x1, None]
    a += rng.normal(0, 5, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def emoji(size, tone, transparent, left_eye="open", mouth="smile"):
    """A round face, flat colours with a darker outline."""
    bg = (0, 0, 0, 0) if transparent else WHITE + (255,)
    outline = tuple(int(c * 0.65) for c in tone)

    def draw(d, k):
        S = size * k
        m = 0.06 * S
        d.ellipse([m, m, S - m, S - m], fill=tone + (255,), outline=outline + (255,),
                  width=max(1, int(0.035 * S)))
        eye = (40, 30, 30, 255)
        for side, state in ((0.35, left_eye), (0.65, "open")):
            cx, cy = side * S, 0.4 * S
            if state == "open":
                d.ellipse([cx - 0.055 * S, cy - 0.085 * S, cx + 0.055 * S, cy + 0.085 * S], fill=eye)
            else:  # closed: a short arc
                d.arc([cx - 0.08 * S, cy - 0.06 * S, cx + 0.08 * S, cy + 0.06 * S], 200, 340,
                      fill=eye, width=max(1, int(0.03 * S)))
        box = [0.28 * S, 0.45 * S, 0.72 * S, 0.78 * S]
        if mouth == "smile":
            d.arc(box, 20, 160, fill=eye, width=max(1, int(0.04 * S)))
        else:
            d.arc([0.28 * S, 0.62 * S, 0.72 * S, 0.95 * S], 200, 340, fill=eye,
                  width=max(1, int(0.04 * S)))

    return _ss(draw, size, size, "RGBA", bg)


def _text_mask(text, height):
    """Blocky text from PIL's built-in bitmap font (the same on every
    machine), scaled up without smoothing, as a mask."""
    font = ImageFont.load_default()
    l, t, r, b = font.getbbox(text)
    m = Image.new("L", (r - l + 2, b - t + 2), 0)
    ImageDraw.Draw(m).text((1 - l, 1 - t), text, fill=255, font=font)
    k = max(1, height // m.size[1])
    return m.resize((m.size[0] * k, m.size[1] * k), Image.NEAREST)


def logo(w, h, scheme, text, mark):
    """A flat badge: background colour, a mark, text."""
    bg, fg, accent = scheme
    im = _ss(lambda d, k: _logo_shapes(d, k, w, h, bg, fg, accent, mark), w, h, "RGB", WHITE)
    tm = _text_mask(text, int(h * 0.3))
    if tm.size[0] > int(w * 0.55):
        tm = tm.resize((int(w * 0.55), max(1, tm.size[1] * int(w * 0.55) // tm.size[0])), Image.NEAREST)
    im.paste(Image.new("RGB", tm.size, fg), (int(w * 0.4), (h - tm.size[1]) // 2), tm)
    return im


def _logo_shapes(d, k, w, h, bg, fg, accent, mark):
    W, H = w * k, h * k
    d.rounded_rectangle([0.03 * W, 0.06 * H, 0.97 * W, 0.94 * H], radius=0.15 * H, fill=bg)
    cx, cy, r = 0.2 * W, 0.5 * H, 0.3 * H
    if mark == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=accent)
        d.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=bg)
    elif mark == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=accent)
    else:
        d.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=accent)
        d.rectangle([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=fg)


def icon(size, what, colour, badge=False, pos=0.5):
    """A flat pictogram on white."""

    def draw(d, k):
        S = size * k
        if what == "bell":
            d.pieslice([0.22 * S, 0.15 * S, 0.78 * S, 0.85 * S], 180, 360, fill=colour)
            d.rectangle([0.22 * S, 0.49 * S, 0.78 * S, 0.72 * S], fill=colour)
            d.polygon([(0.12 * S, 0.78 * S), (0.22 * S, 0.7 * S), (0.78 * S, 0.7 * S),
                       (0.88 * S, 0.78 * S)], fill=colour)
            d.ellipse([0.42 * S, 0.78 * S, 0.58 * S, 0.92 * S], fill=colour)
            if badge:
                d.ellipse([0.64 * S, 0.08 * S, 0.86 * S, 0.3 * S], fill=(239, 68, 68))
        elif what == "house":
            d.polygon([(0.5 * S, 0.12 * S), (0.9 * S, 0.5 * S), (0.1 * S, 0.5 * S)], fill=colour)
            d.rectangle([0.2 * S, 0.48 * S, 0.8 * S, 0.88 * S], fill=colour)
            d.rectangle([0.43 * S, 0.64 * S, 0.57 * S, 0.88 * S], fill=WHITE)
        elif what == "heart":
            d.ellipse([0.12 * S, 0.18 * S, 0.52 * S, 0.58 * S], fill=colour)
            d.ellipse([0.48 * S, 0.18 * S, 0.88 * S, 0.58 * S], fill=colour)
            d.polygon([(0.14 * S, 0.45 * S), (0.86 * S, 0.45 * S), (0.5 * S, 0.88 * S)], fill=colour)
        else:  # disc, centred at pos across
            r = 0.16 * S
            cx = pos * S
            d.ellipse([cx - r, 0.5 * S - r, cx + r, 0.5 * S + r], fill=colour)

    return _ss(draw, size, size, "RGB", WHITE)


def bases(seed):
    """[(name, PIL image, family)] and the distinct look-alike pairs
    [(name_a, name_b, kind)]."""
    rng = np.random.RandomState(seed)
    out, neg = [], []
    # photos: sizes over 64..800, aspect 0.6..1.7
    sizes = [64, 96, 128, 200, 256, 320, 400, 512, 640, 800]
    for i, s in enumerate(sizes):
        ar = rng.uniform(0.6, 1.7)
        w, h = (s, max(48, int(s / ar))) if ar >= 1 else (max(48, int(s * ar)), s)
        out.append(("photo%d" % i, photo(rng, w, h), "photo"))
    for i in range(len(sizes) - 1):
        neg.append(("photo%d" % i, "photo%d" % (i + 1), "photo_other"))
    neg.append(("photo0", "photo%d" % (len(sizes) - 1), "photo_other"))
    # emoji: two geometries (transparent 72 px, white 160 px), six tones
    for g, (size, transparent) in enumerate(((72, True), (160, False))):
        names = []
        for tname, tone in TONES:
            n = "emoji%d_%s" % (g, tname)
            out.append((n, emoji(size, tone, transparent), "emoji"))
            names.append(n)
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                neg.append((names[a], names[b], "emoji_tone"))
        for tname, tone in TONES[:2]:
            wink = "emoji%d_%s_wink" % (g, tname)
            frown = "emoji%d_%s_frown" % (g, tname)
            out.append((wink, emoji(size, tone, transparent, left_eye="closed"), "emoji"))
            out.append((frown, emoji(size, tone, transparent, mouth="frown"), "emoji"))
            neg.append(("emoji%d_%s" % (g, tname), wink, "emoji_eye"))
            neg.append(("emoji%d_%s" % (g, tname), frown, "emoji_mouth"))
    # logos: two layouts, four colour schemes each
    for g, (w, h, text, mark) in enumerate(((240, 96, "ACME", "circle"), (480, 160, "mvl data", "triangle"))):
        names = []
        for k, scheme in enumerate(LOGO_SCHEMES):
            n = "logo%d_c%d" % (g, k)
            out.append((n, logo(w, h, scheme, text, mark), "logo"))
            names.append(n)
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                neg.append((names[a], names[b], "logo_recolour"))
    # icons
    for g, size in enumerate((64, 128)):
        grey = (55, 65, 81)
        out.append(("icon%d_bell" % g, icon(size, "bell", grey), "icon"))
        out.append(("icon%d_bell_dot" % g, icon(size, "bell", grey, badge=True), "icon"))
        neg.append(("icon%d_bell" % g, "icon%d_bell_dot" % g, "icon_detail"))
        for what, c1, c2 in (("house", (37, 99, 235), (22, 163, 74)), ("heart", (225, 29, 72), (147, 51, 234))):
            out.append(("icon%d_%s_a" % (g, what), icon(size, what, c1), "icon"))
            out.append(("icon%d_%s_b" % (g, what), icon(size, what, c2), "icon"))
            neg.append(("icon%d_%s_a" % (g, what), "icon%d_%s_b" % (g, what), "icon_colour"))
        out.append(("icon%d_disc_l" % g, icon(size, "disc", (220, 38, 38), pos=0.3), "icon"))
        out.append(("icon%d_disc_r" % g, icon(size, "disc", (220, 38, 38), pos=0.7), "icon"))
        neg.append(("icon%d_disc_l" % g, "icon%d_disc_r" % g, "shape_moved"))
    return out, neg


# ---------------------------------------------------------------------------
# transformations

def on_white(im):
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, WHITE)
        bg.paste(im, mask=im.split()[3])
        return bg
    return im.convert("RGB")


def _fit(im, side):
    w, h = im.size
    k = side / max(w, h)
    return im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS)


def _crop(im, left, top, right, bottom):
    w, h = im.size
    return im.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def variants(im):
    """[(kind, PIL image, format, save options)] of one base picture."""
    rgb = on_white(im)
    w, h = im.size
    up = min(2.0, 1024 / max(w, h))
    png = ("PNG", {"compress_level": 1})
    v = [("jpeg_q95", rgb, "JPEG", {"quality": 95}),
         ("jpeg_q75", rgb, "JPEG", {"quality": 75}),
         ("jpeg_q50", rgb, "JPEG", {"quality": 50}),
         ("webp_lossy", im, "WEBP", {"quality": 80, "method": 2}),
         ("webp_lossless", im, "WEBP", {"lossless": True, "quality": 20, "method": 0}),
         ("png_alpha", im.convert("RGBA")) + png,
         ("png_rgb", rgb) + png,
         ("png_palette", rgb.quantize(256)) + png,
         ("resize_half", im.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS)) + png,
         ("resize_up", im.resize((round(w * up), round(h * up)), Image.BICUBIC)) + png,
         ("resize_224", _fit(im, 224)) + png,
         ("resize_jpeg", _fit(rgb, 224), "JPEG", {"quality": 75}),
         ("crop_2", _crop(im, .02, .02, .02, .02)) + png,
         ("crop_4", _crop(im, .04, .04, .04, .04)) + png,
         ("crop_3_corner", _crop(im, .03, .03, 0, 0)) + png,
         ("brighter", ImageEnhance.Brightness(rgb).enhance(1.1)) + png,
         ("darker", ImageEnhance.Brightness(rgb).enhance(0.9)) + png]
    return v


def _save(im, path, fmt, opts):
    with open(path, "wb") as f:
        im.save(f, fmt, **opts)
    return path


EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def make_set(outdir, seed=0):
    """Writes the set under outdir; returns [(name_a, path_a, name_b,
    path_b, label, kind)], duplicates first, in a fixed order."""
    os.makedirs(outdir, exist_ok=True)
    pics, neg = bases(seed)
    orig, pairs, lossy = {}, [], {}
    for name, im, _family in pics:
        p = _save(im, os.path.join(outdir, name + ".png"), "PNG", {"compress_level": 1})
        orig[name] = p
        for kind, vim, fmt, opts in variants(im):
            vn = "%s.%s" % (name, kind)
            vp = _save(vim, os.path.join(outdir, "%s.%s" % (vn, EXT[fmt])), fmt, opts)
            pairs.append((name, p, vn, vp, 1, kind))
            lossy[(name, kind)] = (vn, vp)
    for a, b, kind in neg:
        pairs.append((a, orig[a], b, orig[b], 0, kind))
    for a, b, kind in neg:
        # the look-alikes after lossy coding: a as JPEG q75, b as lossy WebP
        (an, ap), (bn, bp) = lossy[(a, "jpeg_q75")], lossy[(b, "webp_lossy")]
        pairs.append((an, ap, bn, bp, 0, kind))
    return pairs


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Writes the labelled near-duplicate image set.")
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    pairs = make_set(a.outdir, a.seed)
    with open(os.path.join(a.outdir, "pairs.tsv"), "w") as f:
        f.write("name_a\tpath_a\tname_b\tpath_b\tlabel\tkind\n")
        for p in pairs:
            f.write("\t".join(str(x) for x in p) + "\n")
    nd = sum(1 for p in pairs if p[4])
    print("%d pairs (%d duplicates, %d distinct) in %s" % (len(pairs), nd, len(pairs) - nd, a.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
