"""The supervised reference (paper Table 3's Retina U-Net, in its spirit): a small 3D U-Net trained
on the training split's organ masks that segments every organ at once and, at every voxel inside
an organ, regresses the distances to the six faces of the organ's box.

    config     the training settings (torch-free)
    network    the U-Net with its two heads (segmentation logits, box-face distances)
    samples    a case as training material: coarse volume, soft masks, true boxes, augmentation
    training   the losses and a resumable training loop with validation and the best checkpoint
    boxes      a trained network on a new case -> one box per organ (two rules: mask or votes)

Unlike RPR-Loc it needs labelled scans: it is the upper bound of the comparison, not a one-shot
method.
"""
