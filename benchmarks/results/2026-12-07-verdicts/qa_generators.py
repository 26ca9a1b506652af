"""Functions the TOML examples name as ``module:function`` (the file's folder is importable).

Run directly, it shows what they compute.
"""


def word_count(answer: str) -> int:
    """The number of words of an answer (an ``expression`` column)."""
    return len(answer.split())


def long_enough(row: dict) -> bool:
    """A ``keep_if`` filter: keep answers of at least five words."""
    return len(row["answer"].split()) >= 5


if __name__ == "__main__":
    print(word_count("Water boils at 100 degrees at sea level."))
    print(long_enough({"answer": "Too short."}))
