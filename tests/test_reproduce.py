"""`make reproduce` runs the notebooks with the same kernels on every x86-64 machine."""

import os

from rprloc_core.reproduce import KERNEL_ISA, cap_kernel_isa


def test_the_instruction_set_is_capped_on_x86_and_a_user_setting_is_kept(monkeypatch):
    for name in KERNEL_ISA:
        monkeypatch.delenv(name, raising=False)
    assert cap_kernel_isa("x86_64") == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert cap_kernel_isa("x86_64")["ATEN_CPU_CAPABILITY"] == "default"
    for name in KERNEL_ISA:
        monkeypatch.delenv(name, raising=False)
    assert cap_kernel_isa("aarch64") == {} and not any(name in os.environ for name in KERNEL_ISA)
