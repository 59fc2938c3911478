"""Stop-word lists for English and Chinese (function words; for classic models and Gopher's rule)."""

from __future__ import annotations

EN = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same shan't
she she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then
there there's these they they'd they'll they're they've this those through to too under until up very was
wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while who who's
whom why why's will with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves
's n't 're 've 'll 'd 'm just also
""".split())

# Gopher's rule: a real English text has at least two of these.
GOPHER = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])

ZH = frozenset("""
的 了 在 是 我 有 和 就 不 人 都 一 一个 上 也 很 到 说 要 去 你 会 着 没有 看 好 自己 这 那 他 她 它 们 我们 你们
他们 她们 之 与 及 其 而 或 并 但 但是 因为 所以 如果 虽然 然而 而且 以及 对 对于 把 被 让 给 从 向 于 为 为了
以 由 由于 关于 这个 那个 这些 那些 这样 那样 什么 怎么 怎样 为什么 哪 哪里 哪个 谁 多少 几 吗 呢 吧 啊 呀 哦 嗯
哈 么 啦 得 地 所 者 也是 还 还是 又 再 才 只 只是 已经 曾经 正在 将 将要 可以 可能 应该 能 能够 必须 需要 就是
或者 还有 以后 以前 之后 之前 时候 时 后 前 里 中 内 外 下 此 彼 该 各 每 某 等 等等 啊 嘛 呗 乎 矣 焉 哉 也 兮
""".split())


def stopwords(lang: str) -> frozenset[str]:
    return ZH if lang.startswith("zh") else EN
