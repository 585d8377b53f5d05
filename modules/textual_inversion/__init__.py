"""A1111's `modules.textual_inversion` package path. Only `dataset.re_numbers_at_start` is here, for
extensions that import it (Dataset Tag Editor); this web UI's embeddings are modules/embeddings.py."""
