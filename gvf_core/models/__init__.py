"""Models: the Gaussian Variation Field VAE (and, later, the diffusion transformer)."""
