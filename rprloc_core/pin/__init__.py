"""PIN (Li et al., 2018): a patch-based iterative network that moves landmarks (or the parameters
of a shape model of all landmarks) by classifying the direction and regressing the displacement
from 2.5D patches. Supervised: on OpenKBP its landmarks come from the training split's masks.

    shape_model    PCA of all landmark coordinates, keeping 99.5 % of the variance
    patches25d     three orthogonal 2D patches through a point, in mm, stacked as channels
    network        the CNN (five conv + pool stages, a classification and a regression head), losses
    update_rules   rules A, B and C, iterated from several initialisations
"""
