"""A1111's `modules.textual_inversion.dataset` path, for extensions: `re_numbers_at_start`, the
pattern A1111 strips from file names used as captions ("00012-a cat.png" -> "a cat"). Nothing in
the project imports it."""
import re

re_numbers_at_start = re.compile(r"^[-\d]+\s*")
