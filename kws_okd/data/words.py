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

# Other words the embedded corpus speaks so that ``_unknown_`` covers ordinary speech,
# not only the 25 other GSC words: frequent English words, smart-speaker vocabulary,
# first names, and near misses of the keywords (same vowel or onset, different word).
# Homophones of a keyword ("know", "write") are left out: they sound like the keyword.
EXTRA_UNKNOWN_WORDS = (
    # frequent words
    "the", "and", "that", "have", "with", "this", "from", "they", "what", "there",
    "about", "would", "people", "because", "water", "morning", "today", "thanks",
    "please", "hello", "okay", "maybe", "never", "always", "little", "number",
    # devices and homes
    "music", "volume", "phone", "weather", "lights", "open", "close", "play", "pause", "next",
    # names
    "john", "mary", "michael", "sarah", "david", "emma", "kevin", "anna", "robert", "lisa",
    # near misses of the ten keywords
    "yet", "less", "nope", "note", "cup", "us", "town", "dawn", "lift", "loft", "light",
    "bright", "often", "of", "top", "stock", "step", "gold", "goat", "ago",
)


def spoken(name: str) -> str:
    """What a synthesiser says for a word folder or class name: a phrase's folder
    (``lights_on``) has underscores where its words have spaces."""
    return name.replace("_", " ")


def folder_name(phrase: str) -> str:
    """The class and word-folder name of a keyword phrase: its spaces made underscores."""
    return phrase.replace(" ", "_")
