"""Google Speech Commands vocabulary."""

# The 35 words of Speech Commands v2 (v1 has the first 30 listed here).
GSC_V1_WORDS = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy",
    "house", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "wow", "yes", "zero",
)
GSC_V2_EXTRA = ("backward", "follow", "forward", "learn", "visual")
GSC_V2_WORDS = tuple(sorted(GSC_V1_WORDS + GSC_V2_EXTRA))

# The standard 12-class task.
KEYWORDS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
BACKGROUND = "_background_noise_"
