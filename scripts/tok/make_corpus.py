#!/usr/bin/python3
"""make_corpus.py: deterministic multilingual text corpus for the tokenizer's
exactness tests (against tiktoken) and its benchmark.  Python stdlib only.

Usage:
  make_corpus.py [--mode lines|docs] [--format text|jsonl] [--size 2M]
                 [--profile test|bench] [--seed N] [--only CATS] [--exclude CATS]
                 [--max-piece BYTES] [-o FILE] [--stats] [--list]

  --mode lines  (default) one text per line, for `--lines` encoding (each line
                is encoded on its own, without its "\\n"; a line may end in or
                contain "\\r", as lines of CRLF files do).  The file ends in "\\n".
  --mode docs   whole documents with "\\n", "\\r\\n", lone "\\r", blank-line
                runs, trailing and leading whitespace, indentation: written
                one after another as one text (--format text, default; encode
                the whole file) or one JSON object {"text": DOC} per line
                (--format jsonl).
  --size        target size in bytes of UTF-8 (K = 10^3, M = 10^6, G = 10^9;
                default 2M); generation stops at the first line or document
                that reaches it.
  --profile     test (default): every category, edge cases weighted up, long
                pieces (one piece of up to --max-piece bytes, default 4000,
                with no pre-token boundary) included.  bench: mostly natural
                prose and code in many languages, no pathological pieces, for
                throughput figures.
  --only/--exclude  comma-separated category names (--list shows them).
  --seed        default 1.  The output is a pure function of the arguments
                (own use of random.Random.random() only, whose sequence Python
                guarantees across versions); --stats prints its SHA-256.

Categories (--list): English prose and long lines, contractions ('s 't 're
've 'm 'll 'd in every case mix, other apostrophes, 'ſ), code (C, Python,
JSON with 2/4/tab indentation, shell/HTML/SQL/markdown/logs/URLs), Chinese
(simplified and traditional), Japanese, Korean, Cyrillic, Arabic/Persian,
Hebrew, Devanagari, Thai, other scripts, European diacritics in NFC and NFD,
emoji (ZWJ families, skin tones, flags, subdivision flags, keycaps,
variation selectors), digits (runs of up to 100 digits, exactly 50, grouped
numbers, non-ASCII digits), whitespace (runs of spaces and tabs, Unicode
spaces, U+0085, U+2028/9, VT/FF, U+180E which is not whitespace for tiktoken),
CRLF, punctuation runs, mixed scripts and case transitions, combining marks
(NFD, stacked, isolated), control characters, special-token text (encoded as
ordinary text), random code points from long-assigned blocks, letters and
digits new in Unicode 15/16 (category unicode16: tiktoken's regex classifies
them as letters/digits, PCRE2 10.42's Unicode 14 tables do not), any code
point in contexts where its character class changes the ids (classes), and,
in the test profile, long pieces.
"""

import argparse
import hashlib
import json
import random
import sys
import unicodedata

# --------------------------------------------------------------------------
# Random numbers: only Random.random() (its sequence for an int seed is
# guaranteed stable across Python versions); everything else derives from it.


class Rng:
    def __init__(self, seed):
        self._r = random.Random(seed).random

    def below(self, n):
        return int(self._r() * n)

    def range(self, lo, hi):  # inclusive
        return lo + int(self._r() * (hi - lo + 1))

    def chance(self, p):
        return self._r() < p

    def pick(self, seq):
        return seq[int(self._r() * len(seq))]

    def weighted(self, items):  # [(item, weight)]
        total = sum(w for _, w in items)
        x = self._r() * total
        for item, w in items:
            x -= w
            if x < 0:
                return item
        return items[-1][0]


def W(s):
    return s.split()


# --------------------------------------------------------------------------
# Vocabularies

EN = W("""
the of and to in a is that for it as was with be by on not he I this are or
his from at which but have an they you were her she there been one all we
their has would when if so no will can more about said up out what some them
time other than into could these only new two may first then do any like my
now over such our man me even most made after also did many before must
through back years where much your way well down should because each just
those people how too little state good very make world still own see men
work long get here between both life being under never day same another know
while last might us great old year off come since against go came right used
take three states himself few house use during without again place around
however home small found thought went say part once general high upon school
every does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet
government system better set told nothing night end why called didn't eyes
find going look asked later knew point next program city business give group
toward young days let room president side social given present several order
national possible rather second face per among form important often things
looking early white case john become large big need four within felt along
children saw best church ever least power development light thing seemed
family interest want members mind country area others done turned although
open god service certain kind problem began different door thus help sense
means whole matter perhaps itself york times law human line above name example
action company hands local show whether five history gave today either act
feet across taken past quite anything seen having death experience body word
half really field am car words already themselves information tell college
shall money period held keep sure free seems real behind cannot miss political
air question making office brought whose special heard major problems ago
became federal moment study available known result street economic boy model
data training tokenizer encoding language neural network pipeline images
caption dataset benchmark throughput latency memory compute gradient""")

NAMES = W("""Alice Bob Charlie Dana Émile Zoë José Müller O'Brien McDonald
DiCaprio Nguyễn Øystein Łukasz Søren Björk Ðorđe Straße Zürich München Köln
São_Paulo Reykjavík Kraków Malmö Åland Curaçao Besançon Tōkyō Kyōto iPhone
macOS GitHub YouTube OpenAI PyTorch TensorFlow JavaScript PostgreSQL
NVIDIA AMD IEEE NASA UNESCO""")

ZH = W("""我们 你们 他们 今天 明天 昨天 时间 工作 学习 中国 北京 上海 经济 发展
技术 人工智能 计算机 数据 模型 语言 文化 历史 社会 问题 方法 研究 科学 世界 国家
城市 公司 市场 产品 服务 用户 系统 网络 信息 安全 教育 学生 老师 学校 大学 医院
医生 健康 生活 家庭 朋友 孩子 父母 天气 春天 夏天 秋天 冬天 早上 晚上 吃饭 喝茶
咖啡 电影 音乐 书 报纸 故事 可以 应该 需要 认为 知道 觉得 希望 开始 结束 继续 成功
失败 重要 简单 复杂 快速 美丽 非常 已经 正在 还是 但是 因为 所以 如果 虽然 而且
或者 的 了 是 在 有 和 也 都 就 不 很 这个 那个 什么 怎么 为什么 哪里 一个 两个 三
四 五 十 百 千 万 亿 年 月 日 图像 标题 训练 分词器 吞吐量 内存 梯度 参数 深度学习""")

ZH_TRAD = W("""我們 學習 電腦 資訊 網路 開發 經濟 歷史 國家 語言 臺灣 香港 圖書館 醫院
鐵路 處理 環境 變化 關係 問題 傳統 體育 藝術 發現 認識 應該 為什麼 這樣 還是 讓""")

JA = W("""私 あなた 彼 彼女 今日 明日 昨日 時間 仕事 勉強 日本 東京 大阪 経済 技術
人工知能 コンピュータ データ モデル 言語 文化 歴史 社会 問題 方法 研究 科学 世界 国
都市 会社 市場 製品 サービス ユーザー システム ネットワーク 情報 安全 教育 学生 先生
学校 大学 病院 健康 生活 家族 友達 子供 天気 春 夏 秋 冬 朝 夜 ご飯 お茶 コーヒー
映画 音楽 本 新聞 物語 美しい 新しい 古い 大きい 小さい 高い 安い 面白い 難しい 簡単
大切 ラーメン 寿司 カタカナ ひらがな 漢字 人々 時々 色々 ｶﾀｶﾅ ﾃｽﾄ ヴァイオリン
ちょっと きょう しゃしん""")
JA_PART = W("は が を に で と も の へ から まで より や か ね よ")
JA_END = W("""です ます でした ました します しました ではありません でしょう だ
ください ありがとうございます こんにちは おはようございます よろしくお願いします""")

KO = W("""안녕하세요 감사합니다 오늘 내일 어제 시간 일 공부 한국 서울 경제 기술
인공지능 컴퓨터 데이터 모델 언어 문화 역사 사회 문제 방법 연구 과학 세계 나라 도시
회사 시장 제품 서비스 사용자 시스템 네트워크 정보 안전 교육 학생 선생님 학교 대학교
병원 건강 생활 가족 친구 아이 날씨 봄 여름 가을 겨울 아침 저녁 밥 차 커피 영화 음악
책 신문 이야기 입니다 있습니다 없습니다 합니다 했습니다 그리고 하지만 그래서 정말
아주 매우 좋은 나쁜 새로운 큰 작은 는 은 이 가 을 를 에 에서 의 도""")

RU = W("""привет мир сегодня завтра вчера время работа учёба Россия Москва экономика
технология искусственный интеллект компьютер данные модель язык культура история
общество проблема метод исследование наука страна город компания рынок продукт
услуга пользователь система сеть информация безопасность образование студент
учитель школа университет больница здоровье жизнь семья друг ребёнок погода весна
лето осень зима утро вечер еда чай кофе фильм музыка книга газета рассказ можно
нужно думать знать хотеть начинать заканчивать продолжать успех важный простой
сложный быстрый красивый очень уже ещё но потому что если хотя и или не в на с по
для от до из за это тот который как почему где один два три Санкт-Петербург""")
UK_SR_BG = W("""їжак єдність ґанок Київ дякую будь ласка Україна Харків Львів щастя
Београд ђак ћерка џем љубав њива Србија Ниш София България Пловдив ъгъл щъркел""")

AR = W("""مرحبا العالم اليوم غدا أمس الوقت العمل الدراسة مصر القاهرة الاقتصاد التكنولوجيا
الذكاء الاصطناعي الحاسوب البيانات النموذج اللغة الثقافة التاريخ المجتمع المشكلة
الطريقة البحث العلم البلد المدينة الشركة السوق المنتج الخدمة المستخدم النظام الشبكة
المعلومات الأمن التعليم الطالب المعلم المدرسة الجامعة المستشفى الصحة الحياة العائلة
الصديق الطفل الطقس الربيع الصيف الخريف الشتاء الصباح المساء الطعام الشاي القهوة الفيلم
الموسيقى الكتاب الجريدة القصة يمكن يجب أعتقد أعرف أريد في من إلى على عن مع هذا هذه
الذي التي كيف لماذا أين واحد اثنان ثلاثة شكرا جزيلا السلام عليكم إن شاء الله""")
FA_UR = W("""سلام دنیا کتاب گفتگو پژوهش چگونه ایران تهران زبان فارسی شکریہ پاکستان
اردو زبان میں ہے""")
AR_VOCALIZED = ["بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ", "ٱلْحَمْدُ لِلَّهِ رَبِّ ٱلْعَٰلَمِينَ",
                "كَتَبَ الطَّالِبُ الدَّرْسَ", "مـــرحـــبـــا", "العَرَبِيَّة"]

HE = W("""שלום עולם היום מחר אתמול זמן עבודה ישראל ירושלים תל אביב כלכלה טכנולוגיה
מחשב נתונים שפה תרבות היסטוריה חברה בעיה שיטה מחקר מדע תודה רבה בבקשה""")
HE_POINTED = ["שָׁלוֹם", "בְּרֵאשִׁית בָּרָא אֱלֹהִים", "תּוֹדָה רַבָּה", "יְרוּשָׁלַיִם"]

HI = W("""नमस्ते दुनिया आज कल समय काम पढ़ाई भारत दिल्ली मुंबई अर्थव्यवस्था प्रौद्योगिकी
कृत्रिम बुद्धिमत्ता कंप्यूटर डेटा मॉडल भाषा संस्कृति इतिहास समाज समस्या तरीका शोध
विज्ञान देश शहर कंपनी बाज़ार उत्पाद सेवा उपयोगकर्ता प्रणाली नेटवर्क जानकारी सुरक्षा
शिक्षा छात्र शिक्षक विद्यालय विश्वविद्यालय अस्पताल स्वास्थ्य जीवन परिवार दोस्त बच्चा
मौसम वसंत गर्मी सर्दी सुबह शाम खाना चाय कॉफ़ी फ़िल्म संगीत किताब अख़बार कहानी है हैं
था थे और या लेकिन क्योंकि अगर में से को का की के पर यह वह क्या क्यों कहाँ एक दो तीन
धन्यवाद संस्कृतम् श्रीमद्भगवद्गीता महाराष्ट्र नेपाल ज्ञान क्षत्रिय""")

TH = W("""สวัสดี ครับ ค่ะ โลก วันนี้ พรุ่งนี้ เมื่อวาน เวลา งาน เรียน ประเทศไทย กรุงเทพ
เศรษฐกิจ เทคโนโลยี ปัญญาประดิษฐ์ คอมพิวเตอร์ ข้อมูล โมเดล ภาษา วัฒนธรรม ประวัติศาสตร์
สังคม ปัญหา วิธี วิจัย วิทยาศาสตร์ เมือง บริษัท ตลาด สินค้า บริการ ผู้ใช้ ระบบ เครือข่าย
ความปลอดภัย การศึกษา นักเรียน ครู โรงเรียน มหาวิทยาลัย โรงพยาบาล สุขภาพ ชีวิต
ครอบครัว เพื่อน เด็ก อากาศ ฤดูร้อน ฤดูฝน ฤดูหนาว เช้า เย็น อาหาร ชา กาแฟ ภาพยนตร์
ดนตรี หนังสือ เรื่อง ได้ ต้อง คิด รู้ อยาก และ หรือ แต่ เพราะ ถ้า ใน จาก ถึง นี้ นั้น
อะไร ทำไม ที่ไหน หนึ่ง สอง สาม ขอบคุณ มากๆ""")

OTHER_SCRIPTS = {
    'greek': W("""Καλημέρα κόσμε σήμερα αύριο χρόνος δουλειά Ελλάδα Αθήνα οικονομία
τεχνολογία υπολογιστής δεδομένα γλώσσα πολιτισμός ιστορία κοινωνία πρόβλημα μέθοδος
έρευνα επιστήμη ἐν ἀρχῇ ἦν ὁ λόγος ΑΘΗΝΑ ψυχή"""),
    'armenian': W("Բարեւ աշխարհ Հայաստան Երևան լեզու շնորհակալություն"),
    'georgian': W("გამარჯობა მსოფლიო საქართველო თბილისი ენა მადლობა"),
    'bengali': W("নমস্কার বিশ্ব বাংলা ভাষা ঢাকা কলকাতা ধন্যবাদ বিজ্ঞান"),
    'tamil': W("வணக்கம் உலகம் தமிழ் மொழி சென்னை நன்றி அறிவியல்"),
    'telugu': W("నమస్కారం ప్రపంచం తెలుగు భాష హైదరాబాద్ ధన్యవాదాలు"),
    'gujarati': W("નમસ્તે દુનિયા ગુજરાતી ભાષા અમદાવાદ"),
    'punjabi': W("ਸਤ ਸ੍ਰੀ ਅਕਾਲ ਪੰਜਾਬੀ ਭਾਸ਼ਾ ਅੰਮ੍ਰਿਤਸਰ"),
    'ethiopic': W("ሰላም ዓለም ኢትዮጵያ አዲስ አበባ አማርኛ"),
    'tibetan': W("བཀྲ་ཤིས་བདེ་ལེགས། བོད་ཡིག ལྷ་ས"),
    'khmer': W("សួស្តី ពិភពលោក កម្ពុជា ភ្នំពេញ ភាសាខ្មែរ"),
    'myanmar': W("မင်္ဂလာပါ ကမ္ဘာ မြန်မာ ရန်ကုန်"),
    'sinhala': W("ආයුබෝවන් ලෝකය ශ්‍රී ලංකාව කොළඹ"),
    'lao': W("ສະບາຍດີ ໂລກ ລາວ ວຽງຈັນ"),
    'mongolian': W("ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ Монгол Улаанбаатар"),
    'cherokee': W("ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᏍᎦᏚᎩ"),
    'canadian': W("ᐃᓄᒃᑎᑐᑦ ᓄᓇᕗᑦ ᐅᖃᐅᓯᖅ"),
    'syriac': W("ܫܠܡܐ ܥܠܡܐ ܠܫܢܐ"),
    'thaana': W("ދިވެހި ބަސް މާލެ"),
    'nko': W("ߒߞߏ ߞߊ߲ ߓߟߏ"),
}

EUROPEAN = W("""Straße Größe Übermäßig ÄÖÜ äöü Fußgängerübergänge Donaudampfschifffahrt
où hôtel français garçon naïve café crème brûlée Ça été déjà à l'école
¿Qué tal? ¡Hola! mañana niño corazón información açúcar não coração São Paulo
Zażółć gęślą jaźń Łódź Kraków źdźbło Příliš žluťoučký kůň úpěl ďábelské ódy
İstanbul ığdır ışık ŞĞÇ şğç Türkiye Þú ert ð æ ø å Æ Ø Å Ærø Smørrebrød
Tiếng Việt người được những đường Nguyễn Hà Nội Hồ Chí Minh Phở
árvíztűrő tükörfúrógép ő ű Ő Ű țară șase ţară şase România Ĳssel ĳs
Ŋŋ Ʒʒ ǅ ǈ ǋ Ǆ ǆ Ǉ ǉ ǲ ﬁ ﬂ ﬀ ẞ ß""")

EMOJI = list("😀😃😄😁😆😅😂🤣😊😇🙂🙃😉😌😍🥰😘😋😛😜🤪🤨🧐🤓😎🤩🥳😏😒😞😔😟😕"
             "😣😖😫😩🥺😢😭😤😠😡🤬🤯😳🥵🥶😱😨😰😥😓🤗🤔🫣🤭🫢🫡🤫🫠🤥😶😐😑😬🙄😯"
             "🐶🐱🐭🐹🐰🦊🐻🐼🐨🐯🦁🐮🐷🐸🐵🍏🍎🍐🍊🍋🍌🍉🍇🍓🫐🍈🍒🍑🥭🍍🥥🥝🍅"
             "⚽🏀🏈⚾🎾🏐🏉🎱🚗🚕🚙🚌🚎🏎🚓🚑🚒✈🚀🛸🌍🌎🌏🌕🌙⭐🌟✨⚡🔥💧🌈☀⛅☁"
             "🎉🎊🎁🎈💯✅❌❓❗💡📌📎🔑🔒💻🖥📱📷🎵🎶")
EMOJI_SEQ = [
    "❤️", "❤", "♥️", "☺️", "✔️", "©️", "®️", "™️", "☀︎", "⚠️", "✈️", "☁️",
    "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "👋🏻", "🙏🏽", "💪🏿", "👌🏼", "✌🏾",
    "👨‍👩‍👧‍👦", "👨‍👩‍👧", "👩‍👩‍👦", "👨‍👨‍👧‍👧", "👪", "👩‍❤️‍👨", "👩‍❤️‍💋‍👨",
    "👨🏽‍💻", "👩‍💻", "🧑🏿‍🚀", "👩🏻‍⚕️", "🏳️‍🌈", "🏴‍☠️", "🐕‍🦺", "🧑‍🤝‍🧑",
    "🧑🏻‍🤝‍🧑🏿", "🫱🏻‍🫲🏿", "👁️‍🗨️", "🧔‍♂️", "🏃‍♀️‍➡️", "❤️‍🔥", "😮‍💨",
    "🇺🇸", "🇯🇵", "🇩🇪", "🇫🇷", "🇨🇳", "🇮🇳", "🇧🇷", "🇺🇦", "🇪🇺", "🇺🇳", "🇬🇧", "🇰🇷",
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",
    "#️⃣", "*️⃣", "0️⃣", "1️⃣", "2️⃣", "3️⃣", "7️⃣", "9️⃣", "🔟", "1⃣",
]

PUNCT_ASCII = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PUNCT_UNI = list("“”‘’«»„‚‹›—–―•·¡¿※†‡§¶…‰′″‴⁂、。！？，：；（）【】《》「」『』〈〉〔〕～・"
                 "¦¬¯°±×÷←→↑↓⇒⇔∀∂∃∅∇∈∉∑∏√∞∧∨∩∪∫≈≠≡≤≥⊂⊃⊕⊗⋅⌘⌥⏎■□▲△▼▽◆◇○●★☆♠♣♥♦♪♫")
PUNCT_FIXED = ["...", "!!!", "???", "?!?!", "----", "====", "****", "####", "~~~~",
               "____", "////", "\\\\\\", "<!-- -->", "=>", "->", "::", ":=", "!==",
               "&&", "||", "<<=", ">>>=", ">.<", "^_^", "¯\\_(ツ)_/¯",
               "(╯°□°）╯︵ ┻━┻", "……", "——", "、、、", "。。。", "！！！", "？？",
               "''", "\"\"\"", "```", "'''", "--", "-->", "<--", "/*", "*/", "#!",
               "...!", "?...", ",,", ";;", "!?", "‽", "''s", "\"'", "'\"",
               "((()))", "[[]]", "{{}}", "<<>>", "|>", "<|", "|]"]

SPACES_UNI = ["\u00a0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004",
              "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a", "\u202f",
              "\u205f", "\u3000", "\u0085", "\u2028", "\u2029", "\x0b", "\x0c"]
# not whitespace for tiktoken's regex (Unicode White_Space): U+180E (PCRE2
# 10.42 with UCP counts it as \s), zero-width and format characters, BOM
NOT_SPACES = ["\u180e", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",
              "\u200e", "\u200f", "\u061c", "\u034f"]

SPECIAL_TEXT = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                "<|endofprompt|>", "<|im_start|>user", "<|im_end|>", "<|im_start|>",
                "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>",
                "<|endoftext", "endoftext|>", "<|<|endoftext|>|>", "<|ENDOFTEXT|>",
                "< |endoftext| >", "<|endoftext|><|endoftext|>", "<|startoftext|>"]

DIGIT_SETS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "০১২৩৪৫৬৭৮৯",
              "๐๑๒๓๔๕๖๗๘๙", "０１２３４５６７８９", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗", "𝟘𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠𝟡",
              "၀၁၂၃၄၅၆၇၈၉", "༠༡༢༣༤༥༦༧༨༩"]
NUMBER_OTHER = list("⁰¹²³⁴⁵⁶⁷⁸⁹₀₁₂₃₄₅₆₇₈₉½⅓¼¾⅛ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫⅰⅱⅲ①②③④⑤⑥⑦⑧⑨⑩⑳㉑〇")

COMBINING = [chr(c) for c in range(0x300, 0x370)]

# Code point ranges, each fully assigned since Unicode 6 or earlier (so that
# every Unicode version concerned classifies them alike), for random text.
SOUP_RANGES = [
    (0x21, 0x7e), (0xa1, 0x24f), (0x250, 0x2ff), (0x300, 0x36f), (0x400, 0x4ff),
    (0x5d0, 0x5ea), (0x620, 0x64a), (0x64b, 0x652), (0x660, 0x669), (0x905, 0x939),
    (0x93e, 0x94d), (0x966, 0x96f), (0xe01, 0xe3a), (0xe40, 0xe5b), (0x1100, 0x11ff),
    (0x1e00, 0x1eff), (0x2010, 0x2027), (0x2030, 0x205e), (0x20a0, 0x20b9),
    (0x2100, 0x214f), (0x2150, 0x2189), (0x2190, 0x21ff), (0x2200, 0x22ff),
    (0x2460, 0x24ff), (0x2500, 0x257f), (0x3001, 0x303f), (0x3041, 0x3096),
    (0x30a0, 0x30ff), (0x4e00, 0x9fa5), (0xac00, 0xd7a3), (0xe000, 0xe0ff),
    (0xfe00, 0xfe0f), (0xff01, 0xff5e), (0xff61, 0xff9f), (0x10330, 0x1034a),
    (0x10400, 0x1044f), (0x12000, 0x1236e), (0x1d400, 0x1d454), (0x1d6a8, 0x1d7c9),
    (0x1d7ce, 0x1d7ff), (0x1f300, 0x1f5ff), (0x1f600, 0x1f64f), (0x1f1e6, 0x1f1ff),
    (0x1f3fb, 0x1f3ff), (0x20000, 0x2a6d6), (0xe0020, 0xe007f), (0xf0000, 0xf00ff),
]

# Letters, digits and marks new in Unicode 15, 15.1 and 16.0 (a sample of
# ranges where tiktoken's regex, Unicode 16, and PCRE2 10.42, Unicode 14,
# disagree): CJK ext. H and I, Kawi, Nag Mundari, Garay, Todhri,
# Tulu-Tigalari, Sunuwar, Gurung Khema, Kirat Rai, Ol Onal, Egyptian
# hieroglyphs ext. A, Cyrillic/Latin additions, outlined digits, ...
UNICODE16_LETTERS = [(0x31350, 0x323af), (0x2ebf0, 0x2ee5d), (0x11f04, 0x11f10),
                     (0x11f12, 0x11f33), (0x1e4d0, 0x1e4eb), (0x10d4a, 0x10d65),
                     (0x10d70, 0x10d85), (0x105c0, 0x105f3), (0x11380, 0x11389),
                     (0x11bc0, 0x11be0), (0x16100, 0x1611d), (0x16d43, 0x16d6a),
                     (0x1e5d0, 0x1e5ed), (0x13460, 0x143fa), (0x1c89, 0x1c8a),
                     (0xa7cb, 0xa7cd), (0xa7da, 0xa7dc), (0x1e030, 0x1e06d),
                     (0x1df25, 0x1df2a), (0x2b739, 0x2b739)]
UNICODE16_DIGITS = [(0x1ccf0, 0x1ccf9), (0x10d40, 0x10d49), (0x11f50, 0x11f59),
                    (0x1e4f0, 0x1e4f9), (0x16130, 0x16139), (0x16d70, 0x16d79),
                    (0x11bf0, 0x11bf9), (0x1e5f1, 0x1e5fa)]
UNICODE16_MARKS = [(0x0897, 0x0897), (0x0cf3, 0x0cf3), (0x0ece, 0x0ece), (0x11f00, 0x11f01),
                   (0x11f34, 0x11f3a), (0x1e4ec, 0x1e4ef), (0x10d69, 0x10d6d),
                   (0x113b8, 0x113c0), (0x1611e, 0x1612f)]

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
HEX = "0123456789abcdef"
LOWER = "abcdefghijklmnopqrstuvwxyz"


def cp_from(r, ranges):
    lo, hi = r.pick(ranges)
    return chr(r.range(lo, hi))


# --------------------------------------------------------------------------
# Building blocks


def ident(r):
    parts = [r.pick(EN).replace("'", "") for _ in range(r.range(1, 3))]
    style = r.below(4)
    if style == 0:
        return "_".join(parts)
    if style == 1:
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    if style == 2:
        return "".join(p.capitalize() for p in parts)
    return parts[0][:4] + str(r.below(100))


def number(r):
    k = r.below(12)
    if k == 0:
        return str(r.below(10))
    if k == 1:
        return str(r.below(1000))
    if k == 2:
        return str(r.range(1000, 10**9))
    if k == 3:
        return "%d.%d" % (r.below(1000), r.below(10**r.range(1, 6)))
    if k == 4:
        return "-" + str(r.below(100000))
    if k == 5:
        return "%d.%de%s%d" % (r.below(10), r.below(1000), r.pick("+-"), r.below(300))
    if k == 6:
        return "0x" + "".join(r.pick(HEX) for _ in range(r.range(1, 16))).upper()
    if k == 7:
        return "{:,}".format(r.range(1000, 10**12))
    if k == 8:
        return "%d%%" % r.below(101)
    if k == 9:
        return "$%d.%02d" % (r.below(100000), r.below(100))
    if k == 10:
        return "%04d-%02d-%02d" % (r.range(1900, 2099), r.range(1, 12), r.range(1, 28))
    return str(r.below(10**r.range(1, 20)))


def en_sentence(r, n=None):
    n = n or r.range(4, 22)
    words = []
    for i in range(n):
        w = r.pick(EN)
        x = r.below(100)
        if x < 4:
            w = r.pick(NAMES).replace("_", " ")
        elif x < 7:
            w = number(r)
        elif x < 10:
            w = contraction_word(r, plain=True)
        elif x < 14:
            w += ","
        elif x < 15:
            w = '"' + w + '"'
        elif x < 16:
            w = "(" + w + ")"
        elif x < 17:
            w += r.pick([";", ":", " -", " —", "—"])
        elif x < 18:
            w = w.upper()
        elif x < 20:
            w += "'s"
        elif x < 22:
            w = w.capitalize()
        words.append(w)
    s = " ".join(words)
    s = s[0].upper() + s[1:]
    return s + r.pick([".", ".", ".", ".", ".", "!", "?", "...", ":", "?!", ".\"", ")."])


CONTR = [("it", "s"), ("he", "s"), ("she", "s"), ("that", "s"), ("what", "s"),
         ("don", "t"), ("can", "t"), ("won", "t"), ("isn", "t"), ("didn", "t"),
         ("we", "re"), ("they", "re"), ("you", "re"), ("you", "ve"), ("we", "ve"),
         ("I", "m"), ("we", "ll"), ("you", "ll"), ("they", "ll"), ("I", "ll"),
         ("she", "d"), ("I", "d"), ("they", "d"), ("John", "s"), ("O", "Neil")]


def case_mix(r, s):
    k = r.below(6)
    if k < 3:
        return s
    if k == 3:
        return s.upper()
    if k == 4:
        return s.capitalize()
    return "".join(ch.upper() if r.chance(0.5) else ch for ch in s)


def contraction_word(r, plain=False):
    base, suf = r.pick(CONTR)
    if plain:
        return base + "'" + suf
    apo = r.weighted([("'", 80), ("\u2019", 8), ("\u02bc", 4), ("`", 4), ("\uff07", 2), ("''", 2)])
    return case_mix(r, base) + apo + case_mix(r, suf)


CONTR_FIXED = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE",
               "'VE", "'Ve", "'vE", "'M", "'LL", "'Ll", "'lL", "'D", " 's", "  'S", "x'sy",
               "'ss", "'sa", "'lll", "'dd", "'mm", "'tt", "'reve", "'ll've", "y'all", "o'clock",
               "rock'n'roll", "'tis", "'twas", "'em", "ma'am", "'re'", "1990's", "90's", "A's",
               "B'S", "DON'T", "Don'T", "don'T", "WE'RE", "I'M", "i'm", "THEY'LL", "SHE'D",
               "'ſ", "'ſt", "x'ſa", "'ſ'ſ", "'K", "'K", "'İ", "'ı", "'ß", "'ẞ", "l'école",
               "d'Artagnan", "l'homme", "aujourd'hui", "'", "''", "'''", "' s", "'\u0301s", "'s\u0301",
               "\"'s\"", "('s)", "[it's]", "it's.", "it's!", "it’s", "IT’S", "it‘s", "it`s",
               "it\u02bcs", "'\u017fT", "he's'", "'s's's", "'S'T'RE", "'\U0001F600", "'1", "'_"]


def g_english(r):
    return [" ".join(en_sentence(r) for _ in range(r.range(1, 6)))]


def g_long_line(r):
    return [" ".join(en_sentence(r) for _ in range(r.range(40, 250)))]


def g_contractions(r):
    parts = []
    for _ in range(r.range(3, 14)):
        k = r.below(10)
        if k < 4:
            parts.append(contraction_word(r))
        elif k < 7:
            parts.append(r.pick(CONTR_FIXED))
        else:
            parts.append(r.pick(EN))
    sep = r.pick([" ", " ", " ", "", "  ", "\t", ", "])
    return [sep.join(parts)]


def c_stmt(r):
    a, b, c = ident(r), ident(r), ident(r)
    t = r.pick(["int", "size_t", "uint32_t", "const char *", "double", "struct node *", "bool"])
    k = r.below(16)
    if k == 0:
        return "%s %s = %s %s %s;" % (t, a, b, r.pick(["+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^"]), number(r))
    if k == 1:
        return 'printf("%%s: %%d\\n", %s, %s);' % (a, b)
    if k == 2:
        return "if (%s %s %s && %s != NULL) return -1;" % (a, r.pick(["<", ">=", "==", "!="]), number(r), c)
    if k == 3:
        return "%s->%s = (%s)malloc(sizeof(*%s) * %d);" % (a, b, t, a, r.below(4096))
    if k == 4:
        return "/* %s */" % en_sentence(r, r.range(3, 10))
    if k == 5:
        return "// %s" % en_sentence(r, r.range(3, 12))
    if k == 6:
        return "return %s >> %d | 0x%sU;" % (a, r.below(32), "".join(r.pick(HEX) for _ in range(8)))
    if k == 7:
        return "%s[i++] = *%s--;" % (a, b)
    if k == 8:
        return "memcpy(%s + %s, %s, %s * sizeof(float));" % (a, b, c, number(r))
    if k == 9:
        return 'fprintf(stderr, "error: %%s (%%s:%%d)\\n", strerror(errno), __FILE__, __LINE__);'
    if k == 10:
        return "%s += %s <<= 2; %s ^= ~%s;" % (a, b, c, a)
    if k == 11:
        return 'static const char *%s = "%s\\t%s\\"";' % (a, en_sentence(r, 3), r.pick(ZH))
    if k == 12:
        return "#define %s_%s %s" % (a.upper(), b.upper(), number(r))
    if k == 13:
        return "assert(%s.%s[%d] == '\\0');" % (a, b, r.below(64))
    if k == 14:
        return "%s = %s ? %s : (%s)-1;" % (a, b, c, t)
    return "goto %s;" % a


def g_code_c(r):
    ind = r.pick(["\t", "    ", "  ", "        "])
    lines = []
    if r.chance(0.3):
        lines.append("#include <%s.h>" % r.pick(["stdio", "stdlib", "string", "stdint", "pcre2", "errno"]))
    lines.append("static %s %s(%s)" % (r.pick(["int", "void", "size_t", "char *"]), ident(r),
                                        ", ".join("%s %s" % (r.pick(["int", "const char *", "size_t", "float *"]), ident(r))
                                                  for _ in range(r.range(0, 4))) or "void"))
    lines.append("{")
    depth = 1
    for _ in range(r.range(2, 14)):
        k = r.below(10)
        if k == 0 and depth < 4:
            lines.append(ind * depth + "for (size_t i = 0; i < %s; i++) {" % ident(r))
            depth += 1
        elif k == 1 and depth < 4:
            lines.append(ind * depth + "if (%s) {" % ident(r))
            depth += 1
        elif k == 2 and depth > 1:
            depth -= 1
            lines.append(ind * depth + r.pick(["}", "} else {", "}"]))
            if lines[-1].endswith("{"):
                depth += 1
        elif k == 3:
            lines.append("")
        else:
            lines.append(ind * depth + c_stmt(r))
    while depth > 0:
        depth -= 1
        lines.append(ind * depth + "}")
    return lines


def py_stmt(r):
    a, b, c = ident(r), ident(r), ident(r)
    k = r.below(16)
    if k == 0:
        return "%s = [%s for %s in %s if %s is not None]" % (a, b, b, c, b)
    if k == 1:
        return 'print(f"{%s!r}: {%s:.3f} — %s", end="")' % (a, b, r.pick(["héllo wörld", "日本", "ok"]))
    if k == 2:
        return "return {k: v for k, v in zip(%s, %s) if v}" % (a, b)
    if k == 3:
        return "# %s" % en_sentence(r, r.range(3, 12))
    if k == 4:
        return 'raise ValueError(f"bad {%s=} in {%s}")' % (a, b)
    if k == 5:
        return "with open(%s, \"rb\") as fh:" % a
    if k == 6:
        return "%s **= 2; %s //= 3; %s @= %s" % (a, b, c, a)
    if k == 7:
        return "%s = lambda x, *args, **kw: x + sum(args)" % a
    if k == 8:
        return "async def %s(self, %s: int, %s: list[str] | None = None) -> dict[str, int]:" % (a, b, c)
    if k == 9:
        return "await asyncio.sleep(%s)" % number(r)
    if k == 10:
        return '"""%s"""' % en_sentence(r)
    if k == 11:
        return "%s = {'%s': %s, \"%s\": [%s, None, True, False]}" % (a, b, number(r), c, number(r))
    if k == 12:
        return "@property"
    if k == 13:
        return 'if __name__ == "__main__":'
    if k == 14:
        return "%s = re.compile(r\"(?i:'s|'t)|\\p{L}+|\\s+(?!\\S)\")" % a
    return "%s.%s(%s, key=lambda t: (-t[1], t[0]))" % (a, b, c)


def g_code_py(r):
    ind = r.pick(["    ", "    ", "  ", "\t"])
    lines = []
    if r.chance(0.3):
        lines.append("import %s" % r.pick(["os", "sys, json", "numpy as np", "torch"]))
    if r.chance(0.5):
        lines.append("class %s(%s):" % (ident(r).capitalize(), r.pick(["object", "nn.Module", "Exception"])))
        base = 1
    else:
        base = 0
    lines.append(ind * base + "def %s(%s):" % (ident(r), ", ".join(ident(r) for _ in range(r.range(0, 4)))))
    depth = base + 1
    for _ in range(r.range(2, 12)):
        k = r.below(8)
        if k == 0 and depth < 5:
            lines.append(ind * depth + r.pick(["for %s in range(%s):", "if %s > %s:", "while %s < %s:"])
                         % (ident(r), number(r)))
            depth += 1
        elif k == 1 and depth > base + 1:
            depth -= 1
            lines.append(ind * depth + py_stmt(r))
        elif k == 2:
            lines.append("")
        else:
            lines.append(ind * depth + py_stmt(r))
    return lines


def json_value(r, depth):
    k = r.below(10 if depth < 3 else 7)
    if k == 0:
        return r.below(10**r.range(1, 12)) * r.pick([1, -1])
    if k == 1:
        return r.below(100000) / r.pick([3.0, 7.0, 1000.0, 1e10])
    if k == 2:
        return r.pick([True, False, None])
    if k in (3, 4):
        return r.pick([en_sentence(r, r.range(1, 8)), r.pick(ZH) + r.pick(ZH), r.pick(RU),
                       r.pick(EMOJI_SEQ), "line1\nline2\ttab \"q\" \\ /", r.pick(JA), "", " ",
                       "https://example.com/a/b?c=1&d=%20", r.pick(AR)])
    if k in (5, 6):
        return number(r)
    if k in (7, 8):
        return {r.pick([ident(r), r.pick(ZH), r.pick(RU), "key with spaces", "$ref", "@id"]):
                json_value(r, depth + 1) for _ in range(r.range(0, 5))}
    return [json_value(r, depth + 1) for _ in range(r.range(0, 5))]


def g_json(r):
    v = {ident(r): json_value(r, 1) for _ in range(r.range(1, 6))}
    if r.chance(0.25):
        return [json.dumps(v, ensure_ascii=r.chance(0.5), separators=r.pick([(",", ":"), (", ", ": ")]))]
    return json.dumps(v, indent=r.pick([2, 4, "\t", 1, 8]), ensure_ascii=r.chance(0.3)).split("\n")


def g_code_misc(r):
    a, b = ident(r), ident(r)
    k = r.below(14)
    if k == 0:
        return ["for f in *.txt; do grep -E '^[0-9]{3,}$' \"$f\" | sort -u >> %s.log; done" % a,
                "export %s=\"${HOME}/.cache/%s\" && mkdir -p \"$%s\" 2>/dev/null || exit 1" % (a.upper(), b, a.upper())]
    if k == 1:
        return ['<div class="%s"><a href="https://example.com/%s?q=%s&amp;x=%%20y">%s</a></div>' % (a, b, number(r), en_sentence(r, 3)),
                "  <img src=\"/img/%s.png\" alt=\"%s\"/>" % (a, r.pick(ZH)),
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head>"]
    if k == 2:
        return ["SELECT %s, COUNT(*) AS n FROM %s WHERE created_at >= '2024-01-01' GROUP BY 1 ORDER BY n DESC LIMIT %d;" % (a, b, r.below(100))]
    if k == 3:
        return ["## %s" % en_sentence(r, 4), "", "- [x] %s" % en_sentence(r, 5), "- [ ] **%s** _%s_ `%s()`" % (a, b, a),
                "| %s | %s | n |" % (a, b), "|---|:---:|--:|", "| %s | %s | %s |" % (r.pick(ZH), r.pick(RU), number(r)),
                "```python", "print(%s)" % a, "```"]
    if k == 4:
        return ["\\frac{\\partial %s}{\\partial x_i} = \\sum_{j=0}^{N-1} w_{ij}^2 + \\alpha \\cdot \\mathbb{E}[x]" % a]
    if k == 5:
        return ["https://www.example.org/%s/%s.html?utm_source=%s&id=%s#section-%d" % (a, b, a, number(r), r.below(9)),
                "mailto:%s.%s@example.co.uk" % (a, b), "ftp://user:p%%40ss@ftp.%s.net:2121/pub/" % a]
    if k == 6:
        return ["C:\\Users\\%s\\Documents\\%s.docx" % (a, b), "/usr/local/lib/python3.11/site-packages/%s/__init__.py" % a,
                "~/.config/%s/settings.json" % b, "..\\..\\%s" % a]
    if k == 7:
        return ["%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] %s (pid=%d, %.3fs)" % (
            r.range(2000, 2030), r.range(1, 12), r.range(1, 28), r.below(24), r.below(60), r.below(60), r.below(1000),
            r.pick(["INFO", "WARN", "ERROR", "DEBUG"]), a, en_sentence(r, 6), r.below(65536), r.below(10000) / 1000)]
    if k == 8:
        return ["@@ -%d,%d +%d,%d @@ %s" % (r.below(999), r.below(9), r.below(999), r.below(9), a),
                "-    %s = %s" % (a, number(r)), "+    %s = %s  # %s" % (a, number(r), en_sentence(r, 3)), " context"]
    if k == 9:
        return ["%s:" % a, "  %s: %s" % (b, number(r)), "  items:", "    - %s" % r.pick(ZH), "    - \"%s\"" % en_sentence(r, 3)]
    if k == 10:
        return ["".join(r.pick(B64) for _ in range(r.range(20, 76))) + r.pick(["", "=", "=="])]
    if k == 11:
        return ["%s-%s-%s-%s-%s" % tuple("".join(r.pick(HEX) for _ in range(n)) for n in (8, 4, 4, 4, 12)),
                "sha256:" + "".join(r.pick(HEX) for _ in range(64))]
    if k == 12:
        return [",".join([a, b, number(r), '"%s, %s"' % (r.pick(EN), r.pick(EN)), "", number(r)])]
    return ["%s := func(%s int) (err error) { return fmt.Errorf(\"%%w: %%d\", ErrX, %s) }" % (a, b, b),
            "fn %s<'a>(x: &'a str) -> Result<Vec<u32>, Box<dyn Error>> { Ok(vec![]) }" % a]


def zh_sentence(r, vocab):
    words = []
    for i in range(r.range(4, 16)):
        x = r.below(100)
        if x < 6:
            words.append(r.pick(["，", "、", "；", "："]))
        elif x < 9:
            words.append(r.pick(["GPT-4", "AI", "iPhone", "Python", "2024年", "3.5%", "１２３", "100", "“" + r.pick(vocab) + "”", "《" + r.pick(vocab) + "》"]))
        else:
            words.append(r.pick(vocab))
    return "".join(words) + r.pick(["。", "。", "！", "？", "…", "。」", ""])


def g_chinese(r):
    vocab = ZH_TRAD + ZH if r.chance(0.25) else ZH
    return [("" if r.chance(0.8) else " ").join(zh_sentence(r, vocab) for _ in range(r.range(1, 5)))]


def g_japanese(r):
    out = []
    for _ in range(r.range(1, 4)):
        s = ""
        for _ in range(r.range(2, 7)):
            s += r.pick(JA) + r.pick(JA_PART)
            if r.chance(0.15):
                s += "、"
        s += r.pick(JA_END) + r.pick(["。", "！", "？", "。", "", "」"])
        out.append(("「" if r.chance(0.1) else "") + s)
    return ["".join(out)]


def g_korean(r):
    return [" ".join(r.pick(KO) for _ in range(r.range(3, 15))) + r.pick([".", "?", "!", "", "..."])]


def g_cyrillic(r):
    vocab = RU + UK_SR_BG if r.chance(0.3) else RU
    out = []
    for _ in range(r.range(1, 4)):
        ws = []
        for _ in range(r.range(3, 16)):
            w = r.pick(vocab)
            x = r.below(30)
            if x == 0:
                w = w.upper()
            elif x == 1:
                w = "«" + w + "»"
            elif x == 2:
                w += ","
            elif x == 3:
                w = number(r)
            elif x == 4:
                w += " —"
            ws.append(w)
        s = " ".join(ws)
        out.append(s[0].upper() + s[1:] + r.pick([".", "!", "?", "...", "…"]))
    return [" ".join(out)]


def g_arabic(r):
    if r.chance(0.15):
        return [r.pick(AR_VOCALIZED) + " " + " ".join(r.pick(AR) for _ in range(r.range(2, 6)))]
    vocab = AR + FA_UR if r.chance(0.25) else AR
    ws = []
    for _ in range(r.range(3, 16)):
        w = r.pick(vocab)
        x = r.below(30)
        if x == 0:
            w += "،"
        elif x == 1:
            w = "".join(r.pick(DIGIT_SETS[1]) for _ in range(r.range(1, 6)))
        elif x == 2:
            w = r.pick(EN)
        elif x == 3:
            w = "\u200f" + w
        elif x == 4:
            w = "".join(ch + (r.pick("\u064e\u064f\u0650\u0651\u0652\u064b") if r.chance(0.5) else "") for ch in w)
        elif x == 5:
            w += "ـــ"
        ws.append(w)
    return [" ".join(ws) + r.pick([".", "؟", "!", "", "؛"])]


def g_hebrew(r):
    ws = [r.pick(HE) if r.chance(0.85) else r.pick(HE_POINTED) for _ in range(r.range(3, 12))]
    return [" ".join(ws) + r.pick([".", "?", "!", ""])]


def g_devanagari(r):
    ws = []
    for _ in range(r.range(3, 16)):
        x = r.below(30)
        if x == 0:
            ws.append("".join(r.pick(DIGIT_SETS[3]) for _ in range(r.range(1, 5))))
        elif x == 1:
            ws.append(r.pick(EN))
        else:
            ws.append(r.pick(HI))
    return [" ".join(ws) + r.pick([" ।", "।", " ॥", "?", ""])]


def g_thai(r):
    phrases = []
    for _ in range(r.range(1, 6)):
        phrases.append("".join(r.pick(TH) for _ in range(r.range(2, 8))))
        if r.chance(0.1):
            phrases.append("".join(r.pick(DIGIT_SETS[5]) for _ in range(r.range(1, 4))))
    return [" ".join(phrases) + r.pick(["", "ฯ", " ๆ", "!"])]


def g_other_scripts(r):
    name = r.pick(sorted(OTHER_SCRIPTS))
    vocab = OTHER_SCRIPTS[name]
    return [" ".join(r.pick(vocab) for _ in range(r.range(3, 12))) + r.pick([".", "", "!", "?", " ።", "།"])]


def g_european(r):
    ws = [r.pick(EUROPEAN) for _ in range(r.range(3, 16))]
    s = " ".join(ws)
    form = r.below(10)
    if form < 2:
        s = unicodedata.normalize("NFD", s)
    elif form < 3:
        s = unicodedata.normalize("NFKC", s)
    return [s + r.pick([".", "!", "?", ""])]


def g_emoji(r):
    parts = []
    for _ in range(r.range(2, 14)):
        k = r.below(10)
        if k < 3:
            parts.append(r.pick(EMOJI))
        elif k < 6:
            parts.append(r.pick(EMOJI_SEQ))
        elif k < 7:
            parts.append("".join(r.pick(EMOJI) for _ in range(r.range(2, 8))))
        elif k < 8:
            parts.append("".join(r.pick(EMOJI_SEQ) for _ in range(r.range(2, 6))))
        else:
            parts.append(r.pick(EN + ZH + RU + ["!!!", "?", "1", "2024", "#", "ok"]))
    sep = r.pick([" ", "", " ", "  ", "\t"])
    return [sep.join(parts)]


def g_digits(r):
    parts = []
    for _ in range(r.range(1, 8)):
        k = r.below(12)
        if k == 0:
            parts.append("".join(r.pick("0123456789") for _ in range(50)))
        elif k == 1:
            parts.append("".join(r.pick("0123456789") for _ in range(r.range(1, 100))))
        elif k == 2:
            ds = r.pick(DIGIT_SETS)
            parts.append("".join(r.pick(ds) for _ in range(r.range(1, 30))))
        elif k == 3:
            parts.append("".join(r.pick(NUMBER_OTHER) for _ in range(r.range(1, 6))))
        elif k == 4:
            parts.append(r.pick(["+1 (555) 123-4567", "192.168.0.1", "fe80::1ff:fe23:4567:890a", "v2.10.3-rc.1",
                                 "4111 1111 1111 1111", "1st 2nd 3rd 4th 21st", "1.234.567,89", "1 234 567",
                                 "6.022e23", "0b1010_1010", "3.14159265358979323846", "12:34:56", "1/2/3",
                                 "x1y2z3", "abc123def456", "٣٤٥abc", "2²³", "10⁻⁹", "H₂O", "1e-10", "-0.0",
                                 "007", "000000", "1,000,000,000,000", "99.999%", "€5,00", "¥1000", "£3.50"]))
        elif k == 5:
            parts.append(str(r.below(10**r.range(1, 9))) + r.pick(LOWER + "年月日%"))
        else:
            parts.append(number(r))
    return [r.pick([" ", "", ", ", " ", "-"]).join(parts)]


def ws_run(r):
    k = r.below(12)
    if k < 4:
        return " " * r.range(1, 40)
    if k < 6:
        return "\t" * r.range(1, 6)
    if k < 8:
        return "".join(r.pick([" ", "\t", " ", " "]) for _ in range(r.range(2, 12)))
    if k < 10:
        return "".join(r.pick(SPACES_UNI + [" "]) for _ in range(r.range(1, 5)))
    if k < 11:
        return r.pick(NOT_SPACES) * r.range(1, 3)
    return " " * r.range(1, 3) + r.pick(NOT_SPACES) + " " * r.range(0, 3)


def g_whitespace(r):
    k = r.below(10)
    if k == 0:
        return [""]
    if k == 1:
        return [ws_run(r)]
    toks = [r.pick(EN + ZH[:20] + ["!", "123", "😀", "}", "'s", "x", "é", "\u0301"]) for _ in range(r.range(1, 8))]
    s = ""
    if r.chance(0.4):
        s += ws_run(r)
    for t in toks:
        s += t + ws_run(r)
    if r.chance(0.5):
        s = s.rstrip(" \t")
    return [s]


def g_crlf(r):
    k = r.below(8)
    base = en_sentence(r, r.range(1, 8)) if r.chance(0.7) else r.pick(ZH + RU + EMOJI_SEQ + ["}", "123", "!!"])
    if k == 0:
        return [base + "\r"]
    if k == 1:
        return [base + " \r"]
    if k == 2:
        return [base + "\r\r"]
    if k == 3:
        return ["\r"]
    if k == 4:
        return [base.replace(" ", "\r", 1)]
    if k == 5:
        return [base + "\t\r"]
    if k == 6:
        return [base + "!!!\r"]
    return ["\r" + base]


def g_punct(r):
    parts = []
    for _ in range(r.range(1, 10)):
        k = r.below(6)
        if k == 0:
            parts.append("".join(r.pick(PUNCT_ASCII) for _ in range(r.range(1, 30))))
        elif k == 1:
            parts.append("".join(r.pick(PUNCT_UNI) for _ in range(r.range(1, 12))))
        elif k < 4:
            parts.append(r.pick(PUNCT_FIXED))
        else:
            parts.append(r.pick(EN) + r.pick(PUNCT_FIXED) + r.pick(["", r.pick(EN)]))
    s = r.pick([" ", "", " ", "  "]).join(parts)
    if r.chance(0.1):
        s += "\r"
    return [s]


MIXED_FIXED = ["Hello世界", "abcабв", "тестtest", "日本語English", "Ελληνικάand", "عربيEnglish",
               "हिंदीHindi", "ไทยThai", "한국어Korean", "iPhone15Pro", "COVID-19", "H2O", "x²", "e=mc²",
               "naïve", "cafe\u0301", "café", "ǅungla", "ǈubljana", "getHTTPResponseCode",
               "XMLHttpRequest", "snake_case_name", "kebab-case-name", "ALLCAPS", "MiXeD", "αβγabc",
               "Рaypal", "abc123def", "HTTPServer", "iOS", "McDonald's", "macOS", "ÉCOLE", "ÄÖÜäöü",
               "İstanbul", "ǄǅǆDž", "ABCdef", "abcDEF", "Ab'S", "AB'cd", "DON'T", "ΣΊΣΥΦΟΣ", "ﬁnance",
               "𝐀𝐁𝐂𝐝𝐞𝐟", "𝒜𝒷𝒸", "𐌰𐌱𐌲", "𠀀𠀁𠀂", "𐐀𐐨𐐁𐐩", "𝄞𝄢", "𒀀𒀁", "Ⓐⓑⓒ", "ⅰⅱⅲabc",
               "a\u0308b\u0323c", "ᄀ\u1161\u11a8", "한\u0301", "Ⅻth", "3rd", "日本2024年", "42°C",
               "C++", "C#", "F#", ".NET", "node.js", "e.g.", "i.e.", "U.S.A.", "Ph.D.", "Mr.Smith",
               "ⅯⅯⅩⅩⅣ", "ℕℤℚℝℂ", "ℵ₀", "K\u212a", "ſtraße", "ǰ", "ŉ", "ᾼ", "ﬃ", "ǅ'S", "ΆΈΉ"]


def g_mixed(r):
    parts = []
    for _ in range(r.range(2, 8)):
        k = r.below(5)
        if k < 2:
            parts.append(r.pick(MIXED_FIXED))
        else:
            pool = r.pick([EN, ZH, JA, KO, RU, AR, HE, HI, TH, EUROPEAN, EMOJI, NAMES])
            parts.append(r.pick(pool))
    return [r.pick([" ", "", " ", "-", "_", "/"]).join(parts)]


def g_combining(r):
    k = r.below(8)
    base = r.pick(LOWER + "AEIOUaeiou" + "ابج" + "αβγ" + "абв" + "中" + "1 " + "!" + "😀")
    if k == 0:
        return [unicodedata.normalize("NFD", " ".join(r.pick(EUROPEAN) for _ in range(r.range(3, 10))))]
    if k == 1:
        return ["".join(r.pick(LOWER) + "".join(r.pick(COMBINING) for _ in range(r.range(1, 12)))
                        for _ in range(r.range(2, 10)))]
    if k == 2:
        return ["".join(r.pick(COMBINING) for _ in range(r.range(1, 4))) + r.pick(EN)]
    if k == 3:
        return [r.pick(EN) + " " + r.pick(COMBINING) + r.pick(EN)]
    if k == 4:
        return [base + r.pick(COMBINING) + r.pick(["\u20dd", "\u20e3", "\ufe0f", "\ufe0e", "\u034f", ""]) + r.pick(EN)]
    if k == 5:
        return ["".join(r.pick(["\u1100", "\u1112", "\u110b"]) + r.pick(["\u1161", "\u1169", "\u1173"]) +
                        r.pick(["", "\u11a8", "\u11ab"]) for _ in range(r.range(1, 6)))]
    if k == 6:
        return [r.pick(HI) + "\u094d" + r.pick(["\u200d", "\u200c", ""]) + r.pick(HI)]
    return [r.pick(TH) + r.pick(["\u0e48\u0e49", "\u0e31\u0e48", "\u0e47"]) + r.pick(TH)]


def g_controls(r):
    ctl = [chr(c) for c in list(range(1, 9)) + list(range(0x0e, 0x20)) + [0x7f] + list(range(0x80, 0xa0))]
    k = r.below(5)
    if k == 0:
        return ["\x1b[1;31mERROR\x1b[0m %s" % en_sentence(r, 5)]
    if k == 1:
        return ["\x00" + r.pick(EN) + "\x00\x00" + r.pick(EN)]
    return [r.pick(["", " "]).join(r.pick(ctl) + r.pick(EN + ["", "", " "]) for _ in range(r.range(1, 8)))]


def g_specials(r):
    return [r.pick(["", " ", "  "]).join(
        r.pick(SPECIAL_TEXT) if r.chance(0.5) else r.pick(EN) for _ in range(r.range(1, 6)))]


def g_soup(r):
    s = []
    for _ in range(r.range(5, 60)):
        if r.chance(0.12):
            s.append(" ")
        else:
            s.append(cp_from(r, SOUP_RANGES))
    return ["".join(s)]


def g_unicode16(r):
    parts = []
    for _ in range(r.range(2, 8)):
        k = r.below(6)
        if k < 3:
            parts.append(r.pick(EN) + "".join(cp_from(r, UNICODE16_LETTERS) for _ in range(r.range(1, 4))))
        elif k == 3:
            parts.append("".join(cp_from(r, UNICODE16_DIGITS) for _ in range(r.range(1, 7))))
        elif k == 4:
            parts.append(r.pick(EN) + cp_from(r, UNICODE16_MARKS) + r.pick(EN))
        else:
            parts.append(r.pick(EN))
    return [" ".join(parts)]


# Contexts in which the class of one code point changes the ids (BPE hides
# most piece boundaries, these it does not): before a contraction, inside a
# digit run, between letters of either case, before a newline and spaces.
CLASS_CONTEXTS = ["a{c}'s", "{c}'ll", "{c}'S", "1{c}1234", "{c}12345", "abc{c}def", "ABC{c}def",
                  "abc{c}DEF", "Abc{c}'t", "x {c}b", "x  {c}  y", "!{c}!'s", "{c}   ", " {c}",
                  "{c}\r", "'{c}", "{c}{c}{c}", "({c})", "{c}\t\t"]


def probe_cp(r):
    k = r.below(10)
    if k < 4:
        return cp_from(r, UNICODE16_LETTERS + UNICODE16_DIGITS + UNICODE16_MARKS)
    if k < 5:
        return r.pick(SPACES_UNI + NOT_SPACES)
    c = r.below(0x110000 - 0x800)  # any code point but a surrogate
    return chr(c + 0x800 if c >= 0xd800 else c)


def g_classes(r):
    return [" ".join(r.pick(CLASS_CONTEXTS).format(c=probe_cp(r)) for _ in range(r.range(1, 6)))]


def g_long_piece(r, max_piece):
    n = r.range(max_piece // 8, max_piece)
    k = r.below(12)
    if k == 0:
        s = "a" * n
    elif k == 1:
        s = "".join(r.pick(LOWER) for _ in range(n))
    elif k == 2:
        s = (r.pick(LOWER) + r.pick(LOWER)) * (n // 2)
    elif k == 3:
        s = "".join(r.pick(ZH) for _ in range(n // 6))
    elif k == 4:
        u = r.pick(EMOJI + EMOJI_SEQ)
        s = u * max(1, n // len(u.encode()))
    elif k == 5:
        s = "".join(r.pick("0123456789") for _ in range(n))
    elif k == 6:
        s = " " * n if r.chance(0.5) else "".join(r.pick(" \t") for _ in range(n))
    elif k == 7:
        s = r.pick(["!", ".", "-", "=", "*"]) * n
    elif k == 8:
        s = "".join(r.pick(TH) for _ in range(n // 12))
    elif k == 9:
        s = "".join(r.pick(B64[:62]) for _ in range(n))
    elif k == 10:
        s = "".join(r.pick(EMOJI) for _ in range(n // 4))
    else:
        s = "".join(r.pick(RU) for _ in range(n // 12))
    return [r.pick(["", " ", "x", "The "]) + s + r.pick(["", " ", ".", "\r"])]


# name: (generator, test weight, bench weight)
CATEGORIES = {
    "english": (g_english, 12, 24),
    "long_line": (g_long_line, 0.08, 0.1),
    "contractions": (g_contractions, 5, 1),
    "code_c": (g_code_c, 4, 3),
    "code_py": (g_code_py, 4, 3),
    "json": (g_json, 4, 3),
    "code_misc": (g_code_misc, 5, 3),
    "chinese": (g_chinese, 5, 16),
    "japanese": (g_japanese, 4, 10),
    "korean": (g_korean, 2, 6),
    "cyrillic": (g_cyrillic, 5, 8),
    "arabic": (g_arabic, 4, 10),
    "hebrew": (g_hebrew, 2, 2),
    "devanagari": (g_devanagari, 4, 9),
    "thai": (g_thai, 3, 4),
    "other_scripts": (g_other_scripts, 4, 5),
    "european": (g_european, 4, 10),
    "emoji": (g_emoji, 6, 4),
    "digits": (g_digits, 5, 2),
    "whitespace": (g_whitespace, 5, 1),
    "crlf": (g_crlf, 3, 0),
    "punct": (g_punct, 4, 1),
    "mixed": (g_mixed, 5, 1),
    "combining": (g_combining, 3, 0.5),
    "controls": (g_controls, 1, 0),
    "specials": (g_specials, 1, 0.1),
    "soup": (g_soup, 2, 0),
    "unicode16": (g_unicode16, 1, 0),
    "classes": (g_classes, 2, 0),
    "long_piece": (None, 0.3, 0),
}


def parse_size(s):
    s = s.strip().upper().rstrip("B")
    mult = 1
    if s and s[-1] in "KMG":
        mult = {"K": 10**3, "M": 10**6, "G": 10**9}[s[-1]]
        s = s[:-1]
    try:
        v = int(float(s) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError("bad size %r" % s)
    if v <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return v


class Gen:
    def __init__(self, args):
        self.r = Rng(args.seed)
        self.args = args
        col = 1 if args.profile == "test" else 2
        names = list(CATEGORIES)
        if args.only:
            names = [n for n in names if n in args.only]
        names = [n for n in names if n not in args.exclude]
        self.cats = [(n, CATEGORIES[n][col]) for n in names if CATEGORIES[n][col] > 0]
        if not self.cats:
            sys.exit("make_corpus: no category left")
        self.stats = {}

    def block(self):
        """One block: (category, [lines])."""
        r = self.r
        name = r.weighted(self.cats)
        if name == "long_piece":
            lines = g_long_piece(r, self.args.max_piece)
        else:
            lines = CATEGORIES[name][0](r)
        return name, lines

    def count(self, name, nbytes):
        self.stats[name] = self.stats.get(name, 0) + nbytes

    def lines_mode(self, out):
        r = self.r
        total = 0
        nlines = 0
        while total < self.args.size:
            name, lines = self.block()
            if name != "crlf" and r.chance(0.06):  # a block from a CRLF file
                lines = [ln + "\r" for ln in lines]
            if r.chance(0.05):  # trailing whitespace
                lines = [ln + ws_run(r) for ln in lines]
            text = "\n".join(lines) + "\n"
            b = text.encode("utf-8")
            out.write(b)
            total += len(b)
            nlines += len(lines)
            self.count(name, len(b))
        return total, nlines

    def doc(self):
        r = self.r
        style = r.weighted([("\n", 55), ("\r\n", 25), ("mixed", 10), ("\r", 3), ("\n\r", 2), ("\r\r\n", 1)])
        nl = (lambda: r.pick(["\n", "\r\n", "\n", "\r\n", "\r"])) if style == "mixed" else (lambda: style)
        nblocks = r.range(1, 12) if self.args.profile == "test" else r.range(2, 20)
        parts = []
        if r.chance(0.08):
            parts.append(r.pick(["\n", "\n\n", "  \n", "\r\n", " ", "\t"]))
        names = []
        for bi in range(nblocks):
            name, lines = self.block()
            names.append((name, sum(len(ln.encode("utf-8")) + 1 for ln in lines)))
            for li, ln in enumerate(lines):
                if r.chance(0.04):
                    ln += ws_run(r)  # trailing whitespace before the newline
                parts.append(ln)
                if li + 1 < len(lines):
                    parts.append(nl())
            if bi + 1 < nblocks:
                k = r.below(10)
                if k < 4:
                    parts.append(nl())
                elif k < 7:
                    parts.append(nl() + nl())
                elif k < 8:
                    parts.append(nl() * r.range(3, 6))
                elif k < 9:
                    parts.append(nl() + r.pick([" ", "  ", "\t", "   \t"]) + nl())
                else:
                    parts.append(r.pick([" ", "  ", "", "\t"]))
        parts.append(r.pick(["\n", "\n", "", "\r\n", "\n\n", "  \n", "   ", "\n\n\n"]))
        return names, "".join(parts)

    def docs_mode(self, out):
        total = 0
        ndocs = 0
        while total < self.args.size:
            names, d = self.doc()
            if self.args.format == "jsonl":
                b = (json.dumps({"text": d}, ensure_ascii=False) + "\n").encode("utf-8")
            else:
                b = d.encode("utf-8")
            out.write(b)
            total += len(b)
            ndocs += 1
            blocks = sum(nb for _, nb in names)
            for n, nb in names:  # separators and JSON quoting shared out pro rata
                self.count(n, len(b) * nb / blocks)
        return total, ndocs


class HashWriter:
    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        self.f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["lines", "docs"], default="lines")
    ap.add_argument("--format", choices=["text", "jsonl"], default="text")
    ap.add_argument("--size", type=parse_size, default=parse_size("2M"))
    ap.add_argument("--profile", choices=["test", "bench"], default="test")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", type=lambda s: set(filter(None, s.split(","))), default=set())
    ap.add_argument("--exclude", type=lambda s: set(filter(None, s.split(","))), default=set())
    ap.add_argument("--max-piece", type=int, default=4000)
    ap.add_argument("-o", "--output", default="-")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for n, (_, wt, wb) in CATEGORIES.items():
            print("%-14s test %-5g bench %g" % (n, wt, wb))
        return 0
    unknown = (args.only | args.exclude) - set(CATEGORIES)
    if unknown:
        sys.exit("make_corpus: unknown categories: %s (--list)" % ", ".join(sorted(unknown)))
    if args.mode == "lines" and args.format == "jsonl":
        sys.exit("make_corpus: --format jsonl goes with --mode docs")
    if args.max_piece < 16:
        sys.exit("make_corpus: --max-piece must be at least 16")
    g = Gen(args)
    f = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    hw = HashWriter(f)
    try:
        if args.mode == "lines":
            total, n = g.lines_mode(hw)
            unit = "lines"
        else:
            total, n = g.docs_mode(hw)
            unit = "documents"
    finally:
        if f is not sys.stdout.buffer:
            f.close()
        else:
            f.flush()
    if args.stats:
        sys.stderr.write("make_corpus: %d bytes, %d %s, sha256 %s\n" % (total, n, unit, hw.h.hexdigest()))
        for name, b in sorted(g.stats.items(), key=lambda x: -x[1]):
            sys.stderr.write("  %-14s %6.2f%%\n" % (name, 100.0 * b / total))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(141)
