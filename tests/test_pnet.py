"""PNet: shapes, layer table, offset rule, checkpoints and their errors."""

import pytest
import torch
from torch import nn

from rprloc_core.rprloc.pnet import (
    CheckpointError,
    PNet,
    checkpoint_payload,
    layer_table,
    load_pnet,
    predict_offset_mm,
    read_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("variant", ["han", "pancreas"])
@pytest.mark.parametrize("patch_size", [(16, 16, 16), (16, 32, 32), (8, 8, 8), (5, 12, 12)])
def test_output_shape_and_layer_table(variant, patch_size):
    model = PNet(variant, base_width=2, patch_size=patch_size)
    out = model(torch.randn(3, 1, *patch_size))
    assert out.shape == (3, 3)
    table = layer_table(model, patch_size)
    assert table["params"].sum() == sum(p.numel() for p in model.parameters())
    assert table["output_shape"].iloc[-1] == (3,)
    # every spatial axis stays at least 2 voxels long (InstanceNorm needs more than one voxel)
    block5 = table.set_index("layer").loc["encoder.block5", "output_shape"]
    assert block5[0] == 4 * 2 and min(block5[1:]) >= 2


def test_paper_size_matches_authors_fc_input():
    # 16 x 64 x 64 patches, b = 16: three poolings by 2 -> fc_in = prod(patch) / 512 * 4b, as in the authors' code
    model = PNet("han", 16, (16, 64, 64))
    assert model.fc_in == 16 * 64 * 64 // 512 * 64


def test_head_activation_option():
    assert not any(isinstance(m, torch.nn.ReLU) for m in PNet("han", 2, (8, 8, 8)).head)
    assert sum(isinstance(m, torch.nn.ReLU) for m in PNet("han", 2, (8, 8, 8), head_activation="relu").head) == 2
    with pytest.raises(ValueError):
        PNet("han", 2, (8, 8, 8), head_activation="sigmoid")
    with pytest.raises(ValueError, match="variant"):
        PNet("lung", 2, (8, 8, 8))


def test_first_block_width_option_and_its_checkpoint(tmp_path):
    default, narrow = PNet("han", 4, (8, 16, 16)), PNet("han", 4, (8, 16, 16), first_width=4)
    widths = [layer_table(m).set_index("layer").loc["encoder.block1", "output_shape"][0] for m in (default, narrow)]
    assert widths == [8, 4]
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in default.parameters())
    assert "first_width" not in default.config   # released checkpoints' configs stay as they were written
    save_checkpoint(tmp_path / "narrow.pt", narrow)
    loaded = load_pnet(tmp_path / "narrow.pt")
    assert loaded.config == narrow.config and loaded.config["first_width"] == 4
    x = torch.randn(2, 1, 8, 16, 16)
    narrow.eval()
    with torch.no_grad():
        assert torch.equal(narrow(x), loaded(x))
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match="first_width"):
            PNet("han", 4, (8, 16, 16), first_width=bad)


def test_wrong_patch_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expects patches"):
        PNet("han", 2, (8, 8, 8))(torch.zeros(1, 1, 8, 8, 9))


def test_predict_offset_scalar_and_per_axis_r():
    ps, pq = torch.tensor([[0.5, 0.0, -0.2]]), torch.tensor([[0.0, 0.0, 0.3]])
    expected = 30.0 * torch.tanh(ps - pq)
    assert torch.allclose(predict_offset_mm(ps, pq, 30.0), expected)
    r = [10.0, 20.0, 30.0]
    assert torch.allclose(predict_offset_mm(ps, pq, r), torch.tensor(r) * torch.tanh(ps - pq))


def test_checkpoint_round_trip(tmp_path):
    model = PNet("han", 2, (8, 16, 16), r_mm=[15.0, 30.0, 30.0], spacing_mm=[3.0, 2.0, 2.0])
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, {"step": 3})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]   # no temporary file left
    loaded = load_pnet(path, "cpu")
    assert loaded.config == model.config
    assert not loaded.training
    x = torch.randn(2, 1, 8, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert read_checkpoint(path)["extra"] == {"step": 3}
    load_pnet(path, expected={"patch_size": (8, 16, 16), "variant": "han"})


def test_other_architecture_is_a_clear_error(tmp_path):
    small, other = PNet("han", 2, (8, 8, 8)), PNet("pancreas", 2, (8, 8, 8))
    path = tmp_path / "mixed.pt"
    payload = checkpoint_payload(small)
    payload["state_dict"] = other.state_dict()          # weights of another architecture
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match") as info:
        load_pnet(path)
    assert str(path) in str(info.value)

    good = tmp_path / "good.pt"
    save_checkpoint(good, small)
    with pytest.raises(CheckpointError, match="patch_size") as info:
        load_pnet(good, expected={"patch_size": [16, 32, 32]})
    assert str(good) in str(info.value)


def test_non_checkpoint_files_are_clear_errors(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        load_pnet(text)
    assert str(text) in str(info.value)

    other = tmp_path / "autoencoder.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match="not a PNet checkpoint"):
        load_pnet(other)

    with pytest.raises(CheckpointError, match="does not exist"):
        load_pnet(tmp_path / "missing.pt")
    assert issubclass(CheckpointError, ValueError)


def test_instance_norm_fast_path_equals_torch_instance_norm():
    from rprloc_core.rprloc.pnet import InstanceNorm

    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, 7)
    fast, reference = InstanceNorm(5, affine=True), nn.InstanceNorm3d(5, affine=True)
    with torch.no_grad():
        fast.weight.normal_(), fast.bias.normal_()
    reference.load_state_dict(fast.state_dict())
    fast.eval(), reference.eval()
    assert torch.allclose(fast(x), reference(x), atol=1e-5)
    fast.train(), reference.train()                                      # training: torch's own, bit for bit
    assert torch.equal(fast(x), reference(x))


@pytest.mark.parametrize("kernel", [(1, 3, 3), (3, 1, 1), (1, 1, 1)])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("cin", [4, 1])          # 1 with a 1x1x1 kernel: the scale-and-shift path
def test_conv_fast_path_equals_torch_conv(kernel, batch, cin):
    from rprloc_core.rprloc.pnet import Conv3d

    torch.manual_seed(0)
    fast = Conv3d(cin, 6, kernel, padding=tuple(k // 2 for k in kernel))
    reference = nn.Conv3d(cin, 6, kernel, padding=tuple(k // 2 for k in kernel))
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(batch, cin, 5, 7, 9)
    fast.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(fast(x), reference(x), atol=1e-5)
    fast.train()                                                         # training: torch's own, with gradients
    out = fast(x.requires_grad_())
    out.sum().backward()
    assert fast.weight.grad is not None and x.grad is not None


@pytest.mark.parametrize("kernel", [(2, 2, 2), (1, 2, 2), (2, 1, 1), (1, 1, 1)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 8, 8), (1, 2, 5, 7, 9)])
def test_max_pool_fast_path_equals_torch_max_pool(kernel, shape):
    from rprloc_core.rprloc.pnet import MaxPool

    torch.manual_seed(0)
    x = torch.randn(shape)
    pool = MaxPool(kernel).eval()
    assert torch.equal(pool(x), nn.functional.max_pool3d(x, kernel, kernel))     # odd sizes floor, as torch
    with pytest.raises(ValueError, match="1 or 2"):
        MaxPool((3, 2, 2))
