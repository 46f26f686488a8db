"""Cutting a Pnet's first block to fewer channels (rprloc_core.rprloc.pruning)."""

import pytest
import torch

from rprloc_core.rprloc.pnet import PNet
from rprloc_core.rprloc.pruning import first_block_width, narrow_first_block

torch.set_num_threads(1)


def model(first_width=8, seed=0, variant="han"):
    torch.manual_seed(seed)
    return PNet(variant, base_width=4, patch_size=(6, 8, 8), r_mm=30.0, first_width=first_width).eval()


@pytest.mark.parametrize("variant", ["han", "pancreas"])
def test_cut_to_the_full_width_changes_nothing(variant):
    state = model(variant=variant).state_dict()
    cut = narrow_first_block(state, 8)
    assert set(cut) == set(state) and all(torch.equal(cut[k], state[k]) for k in state)


@pytest.mark.parametrize("variant", ["han", "pancreas"])
def test_the_channels_that_carry_nothing_are_the_ones_dropped(variant):
    # Channels whose norms have gamma = beta = 0 are zero after their ReLU and feed nothing
    # downstream: cutting exactly those leaves every output as it was; cutting others would not.
    wide = model(variant=variant, seed=1)
    dead = [0, 3, 5, 6]
    with torch.no_grad():
        for name, module in wide.encoder.block1.named_modules():
            if isinstance(module, torch.nn.InstanceNorm3d):
                module.weight[dead] = 0.0
                module.bias[dead] = 0.0
    narrow = model(first_width=4, variant=variant)
    narrow.load_state_dict(narrow_first_block(wide.state_dict(), 4))
    x = torch.randn(5, 1, 6, 8, 8)
    with torch.no_grad():
        assert torch.allclose(narrow(x), wide(x), atol=1e-5)
        assert first_block_width(narrow.state_dict()) == 4
        other = model(first_width=4, variant=variant)
        kept_wrong = {k: v.clone() for k, v in narrow.state_dict().items()}
        kept_wrong["encoder.block1.norm.weight"] = wide.state_dict()["encoder.block1.norm.weight"][:4].clone()
        other.load_state_dict(kept_wrong)
        assert not torch.allclose(other(x), wide(x), atol=1e-3)


@pytest.mark.parametrize("width", [0, 9, 2.5])
def test_impossible_widths_are_refused(width):
    with pytest.raises(ValueError, match="first block has 8 channels"):
        narrow_first_block(model().state_dict(), width)
