"""Shared pytest set-up: one torch thread (5-50x faster for tiny models on these 2-core machines)."""
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def browser_app(tmp_path_factory):
    """(ctx, url, page): one live server over tiny checkpoints (tests.api_support.make_data_dir) and one
    Chromium page for every browser test of the session (starting them costs ~15 s on 2 cores)."""
    from tests.api_support import make_data_dir
    from tests.browser_support import serve

    yield from serve(make_data_dir(tmp_path_factory.mktemp("browser")))
