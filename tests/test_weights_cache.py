"""A TensorFlow process ports torchvision's weights files without importing torch (ftkit.models.torch_file_as_numpy):
torch costs such a process about 0.6 GB, and the notebooks' cpu profile has 2 GB."""
import os

import pytest

from conftest import run_python

pytest.importorskip("tensorflow")

CODE = """
import sys
import numpy as np
import ftkit
from ftkit.models import mobilenet_weights_path, torch_file_as_numpy
model = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=3, image_size=32, verbose=False)
assert "torch" not in sys.modules, "loading the TF model imported torch"
cached = torch_file_as_numpy(mobilenet_weights_path())   # read back from the cache, still without torch
assert "torch" not in sys.modules
import torch
direct = torch.load(mobilenet_weights_path(), weights_only=True, map_location="cpu")
assert sorted(cached) == sorted(direct), set(cached) ^ set(direct)
for k, v in direct.items():
    assert cached[k].dtype == v.numpy().dtype and np.array_equal(cached[k], v.numpy()), k
print("same", len(direct))
"""


def test_tf_model_loads_without_torch_and_the_cached_tensors_equal_torchs(tmp_path):
    r = run_python(CODE, timeout=600, env={"FTKIT_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "same 314" in r.stdout
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("mobilenet_v2-b0353104.pth.") and files[0].endswith(".safetensors")


def test_an_unwritable_cache_falls_back_to_reading_with_torch(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    r = run_python("import sys, ftkit\n"
                   "from ftkit.models import mobilenet_weights_path, torch_file_as_numpy\n"
                   "sd = torch_file_as_numpy(mobilenet_weights_path())\n"
                   "print(len(sd), 'torch' in sys.modules)", env={"FTKIT_CACHE": str(blocked / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2:] == ["314", "True"]
