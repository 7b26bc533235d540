"""Chinese text for the tokenizer tests: captions as a photo search gets them (simplified and traditional, full-width
punctuation, mixed Chinese-English, emoji, numbers), seeded random strings over the scripts a Chinese query mixes,
and 10,000-character inputs."""

from __future__ import annotations

import random

CAPTIONS = [
    "一只猫坐在沙发上",
    "一隻貓坐在沙發上，看著窗外的雨。",
    "海边的日落，橙色的天空！",
    "海邊的日落，橙色的天空！",
    "两个孩子在公园里放风筝",
    "兩個孩子在公園裡放風箏",
    "雪山脚下的湖泊倒映着蓝天白云",
    "雪山腳下的湖泊倒映著藍天白雲",
    "夜晚的城市街道，霓虹灯闪烁",
    "厨房里有一碗热腾腾的牛肉面",
    "廚房裡有一碗熱騰騰的牛肉麵",
    "一辆红色的自行车停在门口",
    "穿着汉服的女孩在樱花树下拍照",
    "老爷爷在河边钓鱼，旁边有一只小狗",
    "生日蛋糕上插着五根蜡烛🎂",
    "我家的柯基犬🐶在草地上奔跑",
    "早餐：豆浆、油条和包子🥟",
    "故宫的红墙和金色屋顶",
    "臺北101大樓的夜景",
    "香港維多利亞港的煙花",
    "「你好」『世界』【测试】《红楼梦》——……",
    "价格：￥1,299.00元（含税）",
    "Ｈｅｌｌｏ，世界！１２３４５",
    "ＡＢＣ全角字母ａｂｃ和半角abc",
    "我在2024年买了iPhone 15 Pro Max 256GB",
    "周末去Starbucks喝了一杯latte☕",
    "在798艺术区看了Andy Warhol的展览",
    "KFC的全家桶（12块鸡）只要￥99！",
    "温度：-5℃～3℃，湿度45%",
    "第1名、第2名、第３名",
    "电话：+86 138-0013-8000",
    "2023年12月31日 23:59:59",
    "😀😂🐱 小猫咪 🐈‍⬛",
    "👨‍👩‍👧‍👦一家人在海边度假🏖️",
    "🇨🇳 国旗 🇭🇰 🇹🇼",
    "喜欢❤️这张照片👍👍",
    "他说：“今天天气真好。”",
    "她問：「你去哪裡？」",
    "《三体》作者刘慈欣；《活着》作者余华。",
    "猫、狗、鸟、鱼",
    "啊！哦？嗯……",
    "〇一二三四五六七八九十百千万亿",
    "壹贰叁肆伍陆柒捌玖拾",
    "Ⅰ Ⅱ Ⅲ Ⅳ ① ② ③ ㈠ ㈡",
    "龘靐齉爩 生僻字",
    "𠀀𠀁𪜀𫝀 扩展区汉字",
    "Café naïve 北京 ÀÉÎ Straße",
    "ＫＴＶ里唱《月亮代表我的心》",
    "上海　外滩（全角空格）",
    "换行\n和制表\t符号",
    "零宽\u200b空格\u200d连接",
    "日本語のテキストも混ざる：東京タワー",
    "한국어 텍스트：서울 타워",
    "صورة قطة 猫的照片",
    "שלום עולם 和 مرحبا",
    "数学公式：E=mc²，π≈3.14159",
    "网址 https://example.com/路径?查询=值",
    "邮箱 user@例子.中国",
    "#旅行 #美食 @朋友",
    "",
    "   ",
    "。",
]


def random_texts(count: int, seed: int = 0, longest: int = 60) -> list[str]:
    """Seeded strings over CJK ideographs (with extensions A and B), CJK and full-width punctuation, ASCII, digits,
    emoji and whitespace, mixed as search queries mix them."""
    rng = random.Random(seed)
    ideographs = [chr(c) for c in range(0x4E00, 0x9FA6)]
    rare = [chr(c) for c in (*range(0x3400, 0x3500), *range(0x20000, 0x20100))]
    punctuation = list(
        "，。！？；：“”‘’（）【】《》、…—·～「」『』〈〉〔〕﹏＂＃＄％＆＇＊＋－／＜＝＞＠［＼］＾＿｀｛｜｝"
    )
    ascii_ = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?-'\"()")
    fullwidth = [chr(c) for c in range(0xFF10, 0xFF5B)]
    emoji = [chr(c) for c in (*range(0x1F300, 0x1F650), *range(0x1F900, 0x1F9FF))] + ["\u200d", "\ufe0f"]
    space = [" ", "\t", "\n", "\u3000", "\u00a0"]
    pools = [
        ideographs,
        ideographs + punctuation,
        ideographs + ascii_,
        ideographs + punctuation + emoji + space,
        ideographs + rare + fullwidth + punctuation,
        ideographs + ascii_ + fullwidth + emoji + space,
    ]
    texts = []
    for _ in range(count):
        pool = rng.choice(pools)
        texts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, longest))))
    return texts


def long_texts() -> list[str]:
    """10,000-character inputs: one run of ideographs, a space-separated one, and a mixed one."""
    return [
        "蛋糕" * 5000,
        " ".join(["山水"] * 3333) + " ",
        "".join(random_texts(400, seed=1, longest=50))[:10000].ljust(10000, "猫"),
    ]
