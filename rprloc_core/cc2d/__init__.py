"""CC2D (Yao et al., 2021, "One-Shot Medical Landmark Detection"): one labelled template image and
unlabelled training images. Stage 1 learns, without labels, embeddings at several scales such that
a point of a randomly cropped and augmented piece of an image finds itself in the whole image;
stage 2 (TPL) trains a heatmap + offset detector on stage 1's predictions for the training images.
The same code runs on 2D images (the paper's cephalograms, indices (y, x)) and 3D volumes (CT,
indices (z, y, x)).

    config      the training settings of both stages (torch-free)
    network     the multi-scale feature extractor (a small U-Net, five embedding maps)
    augment     a random crop around a random point, rotated in the (y, x) plane and jittered
    loss        the self-supervised loss: cosine maps, softmax with temperature, cross-entropy
    loop        the resumable training loop both stages share (last.pt, best.pt, time limit)
    training    stage 1: self-supervised training on unlabelled images
    inference   stage 1: template landmarks -> multiplied per-scale cosine maps -> argmax
    tpl         stage 2: disk heatmap + offset targets, detector, its training and majority vote
    cephalometric  the paper's own 2D setting: ISBI 2015 landmark cases -> training, prediction, MRE / SDR
"""
