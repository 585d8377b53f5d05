"""A1111's `modules.deepbooru` path, for extensions that import it: DeepDanbooru tagging needs its
model downloaded, which this web UI does not do, so `model.start()` / `model.tag(...)` raise a
RuntimeError saying so (importing works). Nothing in the project imports this module."""

MESSAGE = ("DeepDanbooru tagging is not available in this web UI: it needs a model download; "
           "use a tagger extension that brings its own model")


class DeepDanbooru:
    def load(self) -> None:
        raise RuntimeError(MESSAGE)

    def start(self) -> None:
        raise RuntimeError(MESSAGE)

    def stop(self) -> None:
        """Nothing was started."""

    def tag(self, pil_image) -> str:
        raise RuntimeError(MESSAGE)

    def tag_multi(self, pil_image, force_disable_ranks: bool = False) -> str:
        raise RuntimeError(MESSAGE)


model = DeepDanbooru()
