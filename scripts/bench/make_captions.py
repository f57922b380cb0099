#!/usr/bin/python3
"""make_captions.py N OUT.tar [--seed S]: a realistic web caption set for the
filter benchmark (scripts/bench_filters.sh), as a WebDataset tar holding only
KEY.txt members, keys %09d.  Deterministic for a given N and seed.

What it holds (shares of N, approximately):
  short English alt-texts, 3-20 words     ~52%  ("A red bicycle leaning
                                                  against a brick wall")
  product titles                           ~12%
  news photo captions                       ~8%
  long descriptions, 100-600 chars          ~7%
  other languages (de fr es ru zh ja ar hi) ~15%, about 1.9% each
  too short ("image", "photo 1", "DSC_0042")  3%
  empty or blank                              1%
  emoji with ZWJ sequences                  ~0.6%
  very long (about 3000 chars)              ~0.2%
  invalid UTF-8 (Latin-1 bytes)             ~0.1%
and, applied on top of the captions above (not the short/empty ones):
  HTML tags or entities 5%, URLs 5%, e-mail addresses 1%, extra whitespace,
  newlines, tabs, NBSP and zero-width characters 4%, NFD-decomposed accents
  2% (an accented word is added first where the caption has none).

Captions come from combinatorial templates (a few hundred vocabulary items),
so a million mostly distinct captions cost a few seconds.  The tar is written
directly (POSIX ustar headers, mode 0644, mtime 0), not through tarfile.
"""
import argparse
import os
import random
import sys
import time
import unicodedata

# ------------------------------------------------------------------ English
ADJ = ("red", "blue", "green", "yellow", "old", "small", "large", "vintage",
       "rusty", "wooden", "white", "black", "colorful", "modern", "cozy",
       "empty", "crowded", "quiet", "bright", "dark", "tall", "tiny", "happy",
       "young", "elderly", "fluffy", "shiny", "abandoned", "beautiful",
       "traditional", "golden", "snowy", "wet", "sunny", "misty", "busy",
       "ancient", "broken", "handmade", "striped")
NOUN = ("bicycle", "dog", "cat", "car", "house", "bridge", "tree", "boat",
        "chair", "table", "lamp", "window", "door", "horse", "bird", "train",
        "truck", "church", "lighthouse", "mountain", "river", "street",
        "building", "garden", "kitchen", "bedroom", "cup of coffee",
        "bowl of soup", "plate of pasta", "pizza", "cake", "sandwich",
        "bouquet of flowers", "sunflower", "puppy", "kitten", "teddy bear",
        "guitar", "piano", "laptop", "smartphone", "backpack", "umbrella",
        "motorcycle", "tractor", "barn", "castle", "fountain", "statue",
        "skyscraper", "bus", "airplane", "sailboat", "canoe", "tent",
        "campfire", "waterfall", "lake", "beach", "forest", "field of wheat",
        "pumpkin", "apple", "basket of strawberries", "loaf of bread",
        "pair of shoes", "leather jacket", "wedding dress", "hat", "clock",
        "bookshelf", "sofa", "fireplace", "staircase", "balcony", "mailbox",
        "street lamp", "bench", "swing", "kite", "snowman")
PERSON = ("man", "woman", "young woman", "old man", "little girl", "little boy",
          "couple", "family", "group of friends", "student", "chef", "doctor",
          "farmer", "runner", "cyclist", "businessman", "tourist",
          "photographer", "musician", "teenager", "mother and daughter",
          "father and son", "soldier", "nurse", "worker")
ACTION = ("leaning against", "standing next to", "parked in front of",
          "sitting on", "lying on", "in front of", "next to", "behind",
          "under", "near", "on top of", "reflected in", "surrounded by",
          "covered with", "hanging above")
PERSON_ACTION = ("reading a book", "drinking coffee", "riding a bicycle",
                 "walking a dog", "playing guitar", "taking a photo",
                 "working on a laptop", "talking on the phone",
                 "eating ice cream", "holding an umbrella", "laughing",
                 "smiling at the camera", "jogging", "cooking dinner",
                 "painting a wall", "carrying groceries", "waiting for a bus",
                 "looking at the sea", "dancing", "sleeping")
PLACE = ("brick wall", "wooden fence", "old barn", "city street", "park",
         "beach", "lake", "mountain road", "train station", "coffee shop",
         "kitchen table", "living room", "garden", "market", "harbor",
         "snowy field", "desert", "forest path", "rooftop", "bridge",
         "shop window", "library", "classroom", "office", "stadium",
         "airport", "parking lot", "river bank", "vineyard", "farmhouse",
         "village square", "subway platform", "museum", "playground",
         "hotel lobby", "country road", "sandy beach", "rocky coast",
         "wheat field", "flower meadow")
TIME = ("at sunset", "at sunrise", "at night", "in the rain", "in winter",
        "in autumn", "in spring", "on a summer day", "in the fog",
        "under a blue sky", "at dusk", "in the morning", "after the storm",
        "during golden hour", "", "", "", "")
SURFACE = ("a wooden table", "a white background", "a marble countertop",
           "the grass", "a kitchen counter", "a rustic board", "the sand",
           "a blue background", "a concrete floor", "a linen tablecloth")
PREFIX = ("Close-up of", "Aerial view of", "Photo of", "Portrait of",
          "Silhouette of", "Detail of", "Black and white photo of",
          "Illustration of", "Watercolor painting of", "View of")


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def en_alt(r):
    k = r.random()
    adj = r.choice(ADJ)
    noun = r.choice(NOUN)
    if k < 0.30:
        place = r.choice(PLACE)
        s = f"{article(adj).capitalize()} {adj} {noun} {r.choice(ACTION)} {article(place)} {place}"
        t = r.choice(TIME)
        return f"{s} {t}" if t else s
    if k < 0.50:
        p = r.choice(PERSON)
        place = r.choice(PLACE)
        a = article(p).capitalize()
        if p.startswith(("couple", "family", "group")):
            a = "A"
        return f"{a} {p} {r.choice(PERSON_ACTION)} in {article(place)} {place}"
    if k < 0.65:
        return f"{r.choice(PREFIX)} {article(adj)} {adj} {noun} {r.choice(TIME) or 'in the city'}"
    if k < 0.78:
        return f"{adj.capitalize()} {noun} on {r.choice(SURFACE)}"
    if k < 0.86:
        return f"{adj.capitalize()} {noun} isolated on white background"
    if k < 0.93:
        place = r.choice(PLACE)
        return f"{r.choice(PERSON).capitalize()} and {article(adj)} {adj} {noun} at the {place}"
    return f"{adj.capitalize()} {noun} {r.choice(TIME) or 'in the garden'}, {r.choice(ADJ)} {r.choice(PLACE)} in the background"


BRAND = ("Nordvik", "Acme", "Lumora", "Kestrel", "Brightline", "Oakridge",
         "Velora", "Tundra", "Mistral", "Pinecrest", "Halden", "Zephyr",
         "Corvo", "Silvan", "Arcadia", "Quill", "Marlow", "Ridgeway", "Solace",
         "Ember", "Nimbus", "Cobalt", "Juniper", "Larkspur", "Ostara")
PRODUCT = ("Men's Slim Fit Cotton Oxford Shirt", "Women's Running Shoes",
           "Stainless Steel Water Bottle", "Ceramic Coffee Mug",
           "Wireless Bluetooth Headphones", "Leather Crossbody Bag",
           "Kids' Rain Jacket", "Non-Stick Frying Pan", "Memory Foam Pillow",
           "LED Desk Lamp", "Yoga Mat with Carrying Strap",
           "Cast Iron Skillet", "Wool Beanie Hat", "Cotton Bath Towel Set",
           "Mechanical Gaming Keyboard", "Glass Food Storage Containers",
           "Hardshell Carry-On Suitcase", "Linen Duvet Cover",
           "Bamboo Cutting Board", "Insulated Lunch Box", "Hiking Backpack",
           "Smart Watch Band", "Denim Jacket", "Ankle Boots",
           "Electric Kettle", "Floor Lamp", "Wall Clock", "Throw Blanket",
           "Phone Case", "Sunglasses")
COLOR = ("Navy Blue", "Black", "White", "Charcoal Grey", "Olive Green",
         "Burgundy", "Beige", "Sky Blue", "Coral", "Mustard Yellow", "Silver",
         "Rose Gold", "Forest Green", "Cream", "Brown")
SIZE = ("Size S", "Size M", "Size L", "Size XL", "12 oz", "500 ml", "1 L",
        "Queen", "King", "Twin", "10 inch", "Pack of 2", "Set of 4", "EU 42",
        "US 9", "One Size")


def product(r):
    k = r.random()
    b, p, c, s = r.choice(BRAND), r.choice(PRODUCT), r.choice(COLOR), r.choice(SIZE)
    if k < 0.4:
        return f"{b} {p} - {c}, {s}"
    if k < 0.7:
        return f"{p} | {c} | {s} | {b}"
    if k < 0.85:
        return f"{b} {p} ({c}) {r.randint(2, 900)} pcs"
    return f"{p}, {c.lower()}, {s.lower()} - model {b[:3].upper()}-{r.randint(100, 9999)}"


FIRST = ("John", "Maria", "Ahmed", "Li", "Olga", "James", "Sophie", "Carlos",
         "Aiko", "Fatima", "David", "Elena", "Pierre", "Anna", "Michael",
         "Priya", "Thomas", "Laura", "Kenji", "Sarah", "Lukas", "Isabel",
         "Omar", "Emma", "Victor", "Grace", "Daniel", "Nadia", "Paul", "Hannah")
LAST = ("Smith", "Garcia", "Hassan", "Wang", "Petrova", "Miller", "Dubois",
        "Rodriguez", "Tanaka", "Khan", "Johnson", "Rossi", "Martin", "Schmidt",
        "Brown", "Patel", "Weber", "Lopez", "Sato", "Nguyen", "Kowalski",
        "Silva", "Novak", "Jensen", "Murphy", "Costa", "Fischer", "Ali",
        "Moreau", "Kim")
ROLE = ("President", "Prime Minister", "Senator", "Mayor", "Coach", "CEO",
        "Minister of Finance", "Striker", "Goalkeeper", "Actress", "Singer",
        "Director", "Governor", "Ambassador", "Professor")
EVENT = ("speaks during a press conference", "arrives at the premiere",
         "waves to supporters", "attends a summit", "celebrates a goal",
         "visits a flooded area", "signs an agreement",
         "delivers a speech at the opening ceremony", "leaves the courthouse",
         "meets with local residents", "poses on the red carpet",
         "answers questions from reporters", "takes part in a debate",
         "inspects the damage after the earthquake", "receives an award")
CITY = ("Berlin", "Paris", "Madrid", "London", "Washington", "Tokyo",
        "Moscow", "Beijing", "Cairo", "New Delhi", "Rome", "Brussels",
        "Nairobi", "Sao Paulo", "Sydney", "Toronto", "Geneva", "Vienna",
        "Seoul", "Mexico City", "Istanbul", "Lagos", "Jakarta", "Lisbon",
        "Warsaw", "Dublin", "Oslo", "Athens", "Prague", "Buenos Aires")
MONTH = ("January", "February", "March", "April", "May", "June", "July",
         "August", "September", "October", "November", "December")
AGENCY = ("Reuters", "AP Photo", "AFP", "EPA", "Getty Images", "staff photo")


def news(r):
    s = (f"{r.choice(ROLE)} {r.choice(FIRST)} {r.choice(LAST)} {r.choice(EVENT)} in "
         f"{r.choice(CITY)} on {r.choice(MONTH)} {r.randint(1, 28)}, {r.randint(1998, 2024)}.")
    if r.random() < 0.4:
        s += f" ({r.choice(AGENCY)}/{r.choice(FIRST)} {r.choice(LAST)})"
    return s


LONG_EXTRA = (
    "The photo was taken with a wide-angle lens to capture the whole scene.",
    "Soft natural light falls from the left and leaves long shadows on the ground.",
    "In the background, a row of houses with red roofs lines the street.",
    "The colors are warm and slightly faded, as in an old film photograph.",
    "Several people can be seen walking in the distance, out of focus.",
    "This image is part of a series documenting everyday life in small towns.",
    "The composition follows the rule of thirds, with the subject on the right.",
    "A light breeze moves the leaves of the trees above.",
    "Shot on a cloudy afternoon, the scene has an even, diffuse light.",
    "Fine details such as the texture of the wood and the peeling paint are visible.",
    "The foreground is sharp while the mountains behind are hazy.",
    "It is a popular spot for tourists during the summer months.",
)


def en_long(r, lo=100, hi=600):
    target = r.randint(lo, hi)
    parts = [en_alt(r) + "."]
    n = len(parts[0])
    while n < target:
        p = r.choice(LONG_EXTRA) if r.random() < 0.6 else en_alt(r) + "."
        parts.append(p)
        n += len(p) + 1
    s = " ".join(parts)
    return s[:hi].rsplit(" ", 1)[0] if len(s) > hi else s


def very_long(r):
    return en_long(r, 2900, 3200)


# ---------------------------------------------------------- other languages
# (subject, verb or link, place) phrase lists combined per language; the
# grammar is right for most combinations, good enough for a benchmark.
LANG = {
    "de": (("Ein kleiner Hund", "Eine junge Frau", "Ein alter Mann", "Eine Katze",
            "Ein rotes Fahrrad", "Eine Gruppe von Freunden", "Ein Kind",
            "Ein brauner Bär", "Eine Familie", "Ein weißes Auto", "Ein Fischer",
            "Eine Straßenbahn", "Ein Müller", "Ein Mädchen"),
           ("steht", "spielt", "sitzt", "wartet", "ruht sich aus", "läuft",
            "liegt", "schläft"),
           ("im Park", "vor einer Backsteinmauer", "am Strand", "im Schnee",
            "auf der Brücke", "in der Küche", "neben dem Bahnhof", "im Garten",
            "an der Nordseeküste", "auf dem Marktplatz in München",
            "vor dem Kölner Dom", "im Wald bei Sonnenuntergang",
            "auf einer grünen Wiese", "in einer ruhigen Gasse")),
    "fr": (("Un petit chien", "Une jeune femme", "Un vieil homme", "Un chat",
            "Un vélo rouge", "Un groupe d'amis", "Un enfant", "Une famille",
            "Une voiture blanche", "Un pêcheur", "Une élève", "Un boulanger"),
           ("se repose", "joue", "attend", "est assis", "se promène", "dort",
            "pose", "lit un livre"),
           ("dans le parc", "devant un mur de briques", "sur la plage",
            "sous la neige", "sur le pont", "dans la cuisine",
            "près de la gare", "au café", "au bord de la Seine",
            "sur la place du marché", "devant la cathédrale",
            "en forêt au coucher du soleil", "dans une ruelle étroite",
            "à la fenêtre")),
    "es": (("Un perro pequeño", "Una mujer joven", "Un hombre mayor", "Un gato",
            "Una bicicleta roja", "Un grupo de amigos", "Un niño", "Una familia",
            "Un coche blanco", "Un pescador", "Una niña", "Un músico"),
           ("descansa", "juega", "espera", "está sentado", "pasea", "duerme",
            "posa", "toca la guitarra"),
           ("en el parque", "frente a una pared de ladrillo", "en la playa",
            "bajo la nieve", "sobre el puente", "en la cocina",
            "cerca de la estación", "en la plaza mayor", "junto al río",
            "en el mercado de Sevilla", "al atardecer en la montaña",
            "en una calle estrecha de Toledo", "en el jardín", "en el café")),
    "ru": (("Маленькая собака", "Молодая женщина", "Пожилой мужчина", "Кошка",
            "Красный велосипед", "Группа друзей", "Ребёнок", "Семья",
            "Белый автомобиль", "Рыбак", "Девочка", "Старый трамвай"),
           ("стоит", "играет", "отдыхает", "ждёт", "сидит", "гуляет", "спит"),
           ("в парке", "у кирпичной стены", "на пляже", "под снегом",
            "на мосту", "на кухне", "возле вокзала", "на Красной площади",
            "на берегу реки", "в лесу на закате", "во дворе старого дома",
            "на рынке")),
    "zh": (("一只小狗", "一位年轻女子", "一位老人", "一只猫", "一辆红色自行车",
            "一群朋友", "一个孩子", "一家人", "一辆白色汽车", "一位渔夫"),
           ("在公园里玩耍", "靠在砖墙上", "在海滩上休息", "在雪中等待",
            "站在桥上", "在厨房里做饭", "在火车站附近", "在市场上买菜",
            "在河边散步", "在夕阳下的森林里"),
           ("", "", "，背景是城市天际线", "，阳光明媚", "，高清摄影",
            "，冬天的早晨")),
    "ja": (("小さな犬", "若い女性", "おじいさん", "猫", "赤い自転車", "友達のグループ",
            "子供", "家族", "白い車", "漁師"),
           ("公園で遊ぶ", "レンガの壁にもたれる", "海辺で休む", "雪の中で待つ",
            "橋の上に立つ", "台所で料理する", "駅の近くを歩く", "市場で買い物する",
            "川沿いを散歩する", "夕暮れの森にいる"),
           ("", "", "、東京の街並み", "、秋の紅葉", "のイラスト", "の写真")),
    "ar": (("كلب صغير", "امرأة شابة", "رجل مسن", "قطة", "دراجة حمراء",
            "مجموعة من الأصدقاء", "طفل", "عائلة", "سيارة بيضاء", "صياد"),
           ("يلعب", "يستريح", "ينتظر", "يجلس", "يمشي", "ينام"),
           ("في الحديقة", "أمام جدار من الطوب", "على الشاطئ", "تحت الثلج",
            "على الجسر", "في المطبخ", "بالقرب من محطة القطار", "في السوق القديم",
            "على ضفاف النيل", "في الصحراء عند الغروب")),
    "hi": (("एक छोटा कुत्ता", "एक युवा महिला", "एक बूढ़ा आदमी", "एक बिल्ली",
            "एक लाल साइकिल", "दोस्तों का एक समूह", "एक बच्चा", "एक परिवार",
            "एक सफ़ेद कार", "एक मछुआरा"),
           ("खेल रहा है", "आराम कर रहा है", "इंतज़ार कर रहा है", "बैठा है",
            "टहल रहा है", "सो रहा है"),
           ("पार्क में", "ईंट की दीवार के सामने", "समुद्र तट पर", "बर्फ़ में",
            "पुल पर", "रसोई में", "रेलवे स्टेशन के पास", "बाज़ार में",
            "गंगा के किनारे", "सूर्यास्त के समय जंगल में")),
}
LANGS = tuple(LANG)


def foreign(r):
    lang = r.choice(LANGS)
    subj, verb, place = LANG[lang]
    s, v, p = r.choice(subj), r.choice(verb), r.choice(place)
    if lang == "zh":
        return s + v + p
    if lang == "ja":
        return v + s + p
    if lang == "ar":
        return f"{s} {v} {p}"
    if lang == "hi":
        return f"{s} {p} {v}"
    return f"{s} {v} {p}"


SHORT = ("image", "photo 1", "Photo", "img", "untitled", "IMG_1234.JPG",
         "DSC_0042", "thumbnail", "product image", "picture 3", "logo",
         "banner", "icon", "1", "photo", "Image 2 of 5", "no image",
         "click to enlarge", "cover", "main", "slide 4", "header", "default",
         "placeholder", "n/a", "Screenshot", "photo.jpg", "avatar", "hero")
BLANK = ("", " ", "\n", "\t \n", "\u00a0", "   ", "&nbsp;", "<br>", "\r\n",
         "<p></p>", "\u3000")
EMOJI = ("Happy family 👨\u200d👩\u200d👧\u200d👦 at the beach",
         "🏳️\u200d🌈 Pride parade in {city}",
         "Woman technologist 👩\u200d💻 working late in the office",
         "Our new puppy 🐶❤️ first day home",
         "Best pizza in {city} 🍕🔥 #foodie #yum",
         "Man cook 👨\u200d🍳 preparing dinner in a small kitchen",
         "Sunset vibes 🌅✨ at the {place}",
         "Couple with heart 👩\u200d❤️\u200d👨 on a bridge in {city}",
         "Firefighter 🧑\u200d🚒 saving a cat from a tree",
         "Rainbow flag 🏳️\u200d🌈 and balloons 🎈 at the {place}")
LATIN1 = ("Café crème au lait, photo de vacances", "Schöne Grüße aus München",
          "Niño jugando en la plaza", "Crème brûlée with raspberries",
          "Façade of the old théâtre at night", "Größe M, Farbe grün, 100% Baumwolle")

# ------------------------------------------------------------------ dirt
DOMAIN = ("example.com", "shop.example.org", "cdn.images-host.net",
          "blog.wordpress.com", "www.flickr.com", "i.pinimg.com",
          "news.example.co.uk", "t.co", "bit.ly", "upload.wikimedia.org",
          "media.store.io", "photos.smugmug.com")
SITE = ("Example News", "MyBlog", "Etsy", "Pinterest", "Flickr", "Amazon.com",
        "The Daily Post", "Wikimedia Commons")
ACCENTED = ("café", "Pokémon", "naïve", "jalapeño", "São Paulo", "crème brûlée",
            "Zürich", "résumé", "piñata", "Ångström", "façade", "Bogotá")


def url(r):
    d = r.choice(DOMAIN)
    k = r.random()
    if k < 0.4:
        return f"https://{d}/images/{r.randint(1, 99999)}/{r.choice(NOUN).replace(' ', '-')}-{r.randint(100, 999)}.jpg"
    if k < 0.6:
        return f"http://{d}/p/{r.randint(10**5, 10**9)}?ref=img&utm_source=alt"
    if k < 0.8:
        return f"www.{d.split('.', 1)[-1] if d.startswith('www.') else d}"
    return f"https://{d}/{r.choice(FIRST).lower()}{r.randint(1, 99)}"


def add_url(r, s):
    k = r.random()
    u = url(r)
    if k < 0.5:
        return f"{s} {u}"
    if k < 0.7:
        return f"{s} - Source: {u}"
    if k < 0.85:
        return f"{u} {s}"
    return f"{s} (via {u})"


def add_email(r, s):
    mail = f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower()}@{r.choice(DOMAIN)}"
    k = r.random()
    if k < 0.5:
        return f"{s} Contact: {mail}"
    if k < 0.8:
        return f"{s.rstrip('.')}. For licensing email {mail}"
    return f"{mail} {s}"


def add_html(r, s):
    k = r.random()
    if k < 0.15:
        return f"<p>{s}</p>"
    if k < 0.25:
        w = s.split(" ", 1)
        return f"<b>{w[0]}</b> {w[1]}" if len(w) == 2 else f"<b>{s}</b>"
    if k < 0.35:
        return f"{s}<br/>"
    if k < 0.45:
        return f'<a href="{url(r)}" title="{r.choice(SITE)}">{s}</a>'
    if k < 0.52:
        return f'<img src="{url(r)}" alt="photo"> {s}'
    if k < 0.60:
        return f"<!-- caption -->{s}<span class=\"credit\">{r.choice(SITE)}</span>"
    if k < 0.70:
        return f"{s} &amp; {r.choice(ADJ)} {r.choice(NOUN)}"
    if k < 0.78:
        return f"&quot;{s}&quot;"
    if k < 0.85:
        return f"{s}&nbsp;-&nbsp;{r.choice(SITE)}"
    if k < 0.90:
        return f"&#8220;{s}&#8221; &copy; {r.randint(1999, 2024)}"
    if k < 0.95:
        return f"{s} &#x2014; I &lt;3 it"
    return f"{s} <3 and 2 < 5"


WS_INS = ("  ", "\n", "\t", "\u00a0", " \r\n", "\u200b", "\u3000", "\u2009",
          "\u00ad", "   ", "\ufeff")


def add_ws(r, s):
    k = r.random()
    if k < 0.25:
        return f" {s} "
    if k < 0.40:
        return f"{s}\n"
    if k < 0.50:
        return f"\n\n{s}\n\t"
    w = s.split(" ")
    if len(w) > 1:
        i = r.randrange(1, len(w))
        w[i] = r.choice(WS_INS) + w[i]
    return " ".join(w)


def add_nfd(r, s):
    if s.isascii():
        w = s.split(" ")
        w.insert(r.randrange(0, len(w) + 1), r.choice(ACCENTED))
        s = " ".join(w)
    return unicodedata.normalize("NFD", s)


# ------------------------------------------------------------------ plan
BASES = (  # (share, generator); the rest is en_alt
    (0.12, product), (0.08, news), (0.07, en_long), (0.15, foreign),
    (0.03, "short"), (0.01, "blank"), (0.006, "emoji"), (0.002, very_long),
    (0.001, "latin1"))
MUTATIONS = ((0.05, add_html), (0.05, add_url), (0.01, add_email),
             (0.04, add_ws), (0.02, add_nfd))


def build_plan():
    cum, acc = [], 0.0
    for share, g in BASES:
        acc += share
        cum.append((acc, g))
    return cum


def caption(r, plan):
    x = r.random()
    g = en_alt
    for lim, gen in plan:
        if x < lim:
            g = gen
            break
    if g == "short":
        s = r.choice(SHORT)
        return s.encode() if r.random() < 0.7 else f"{s} {r.randint(1, 9)}".encode()
    if g == "blank":
        return r.choice(BLANK).encode()
    if g == "latin1":
        return r.choice(LATIN1).encode("latin-1")
    if g == "emoji":
        s = r.choice(EMOJI).format(city=r.choice(CITY), place=r.choice(PLACE))
    else:
        s = g(r)
    for p, m in MUTATIONS:
        if r.random() < p:
            s = m(r, s)
    return s.encode()


# ------------------------------------------------------------------ tar
def _field(v, n):
    return v.encode().ljust(n, b"\0")


# ustar header pieces around name[0:100] and size[124:136]
_MID = _field("0000644", 8) + _field("0000000", 8) + _field("0000000", 8)  # 100..124
_AFTER_SIZE = _field("00000000000", 12)  # mtime 136..148
_TAIL = (b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * 32 + b"\0" * 32 +
         b"\0" * 8 + b"\0" * 8 + b"\0" * 155 + b"\0" * 12)  # 156..512
_CK_BASE = sum(_MID) + sum(_AFTER_SIZE) + sum(_TAIL) + 8 * 32  # chksum as spaces
assert 100 + len(_MID) + 12 + len(_AFTER_SIZE) + 8 + len(_TAIL) == 512


def header(name, size):
    nm = name.ljust(100, b"\0")
    sz = b"%011o\0" % size
    ck = _CK_BASE + sum(nm) + sum(sz)
    return nm + _MID + sz + _AFTER_SIZE + (b"%06o\0 " % ck) + _TAIL


def write_tar(path, n, seed):
    r = random.Random(seed)
    plan = build_plan()
    zeros = b"\0" * 512
    out = []
    with open(path, "wb") as f:
        for i in range(n):
            data = caption(r, plan)
            ln = len(data)
            out.append(header(b"%09d.txt" % i, ln))
            out.append(data)
            pad = -ln % 512
            if pad:
                out.append(zeros[:pad])
            if len(out) >= 30000:
                f.write(b"".join(out))
                out.clear()
        out.append(zeros * 2)
        f.write(b"".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    write_tar(a.out, a.n, a.seed)
    print(f"captions {a.n} bytes {os.path.getsize(a.out)} seconds "
          f"{time.perf_counter() - t0:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
