"""words.py SEED LINES: a small text with structure to learn (random sentences of 3-8 of 11 short
words, one per line) on stdout, the same for the same seed: the corpus of the GPT tests."""
import random
import sys

r = random.Random(int(sys.argv[1]))
words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
print("\n".join(" ".join(r.choice(words) for _ in range(r.randint(3, 8))) + "." for _ in range(int(sys.argv[2]))))
