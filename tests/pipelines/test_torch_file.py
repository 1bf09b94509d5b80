"""torch's model file read without torch: the same numbers, and nothing in it ever run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.model import torch_file


def test_a_state_dict_reads_as_torch_reads_it(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    base = torch.randn(6, 4)
    state = {
        "dense.weight": torch.randn(3, 5),
        "half": torch.randn(4).half(),
        "brain": torch.randn(4).bfloat16(),
        "position_ids": torch.arange(7).unsqueeze(0),
        "transposed": base.t(),  # another order of the same storage
        "a_row": base[2],  # a view from an offset into it
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    read = torch_file.read(path)
    assert list(read) == list(state)
    for name, tensor in state.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert read[name].shape == tuple(tensor.shape), name
        assert np.array_equal(read[name].astype(expected.dtype), expected), name


def test_a_file_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    import torch

    ran = tmp_path / "ran"

    class Planted:
        """What a poisoned file holds: a plain unpickler calls ``os.system`` to rebuild it."""

        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {ran}",)

    path = tmp_path / "pytorch_model.bin"
    torch.save({"weight": torch.zeros(2), "planted": Planted()}, path)
    with pytest.raises(ValueError, match="読めません"):
        torch_file.read(path)
    assert not ran.exists()
    (tmp_path / "old.bin").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(ValueError, match="古い形式"):
        torch_file.read(tmp_path / "old.bin")
