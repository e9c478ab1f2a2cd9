"""FLOP counting of executed nodes (`cmal.bench.flops.node_flops`) on hand-computed shapes."""

from __future__ import annotations

from cmal.bench.flops import node_flops


def test_matmul_counts_two_flops_per_multiply_add_with_batch_dims() -> None:
    # (2, 12, 16, 64) @ (2, 12, 64, 16): 24 products of 16x64 by 64x16
    assert node_flops("MatMul", [[2, 12, 16, 64], [2, 12, 64, 16]], [2, 12, 16, 16]) == 2 * 24 * 16 * 64 * 16
    # a linear layer on a 3-d input: (8, 40, 768) @ (768, 3072)
    assert node_flops("MatMul", [[8, 40, 768], [768, 3072]], [8, 40, 3072]) == 2 * 8 * 40 * 768 * 3072


def test_a_product_whose_weight_was_prepacked_counts_the_same() -> None:
    # the profiler lists only the activation when ONNX Runtime pre-packed the weight
    assert node_flops("MatMul", [[8, 40, 768]], [8, 40, 3072]) == 2 * 8 * 40 * 768 * 3072
    assert node_flops("Gemm", [[32, 128], [256, 128], [256]], [32, 256]) == 2 * 32 * 128 * 256


def test_conv_counts_input_channels_per_group_and_kernel_area() -> None:
    # 3x3 conv, 24 -> 48 channels, output 32x32, batch 4
    assert (
        node_flops("Conv", [[4, 24, 64, 64], [48, 24, 3, 3]], [4, 48, 32, 32])
        == 2 * 4 * 48 * 32 * 32 * 24 * 9
    )
    # depthwise: one input channel per group
    assert node_flops("Conv", [[1, 48, 32, 32], [48, 1, 3, 3]], [1, 48, 32, 32]) == 2 * 48 * 32 * 32 * 9


def test_other_ops_are_not_counted() -> None:
    assert node_flops("Softmax", [[8, 12, 40, 40]], [8, 12, 40, 40]) == 0
    assert node_flops("Add", [[8, 40, 768], [768]], [8, 40, 768]) == 0
