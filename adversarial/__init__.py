"""Generative Adversarial Nets (Goodfellow et al., 2014) for TensorFlow and
Keras 3.

    from adversarial import config, train_lib
    result = train_lib.train(config.get_preset("paper_mnist"), "/tmp/gan")

or build the pieces and call `fit()` yourself:

    from adversarial import GAN, networks
    generator, discriminator = networks.build_networks(config, (28, 28, 1))
    gan = GAN(generator, discriminator)
    gan.compile(d_optimizer="adam", g_optimizer="adam")
    gan.fit(images, batch_size=100, epochs=10)

`ConditionalGAN` (p(x | c)) and `MaskedGAN` (p(x_S | x_not-S)) are the
paper's Section 7 models, trained the same way.
"""

__version__ = "0.1.0"

from adversarial.config import Config, ConfigError, PRESETS, get_preset
from adversarial.conditional import ConditionalGAN
from adversarial.gan import GAN
from adversarial.masked import MaskedGAN
from adversarial.losses import (discriminator_loss, minimax_generator_loss,
                                non_saturating_generator_loss)
from adversarial.networks import Dropout, Maxout

__all__ = [
    "Config", "ConfigError", "PRESETS", "get_preset", "GAN",
    "ConditionalGAN", "MaskedGAN",
    "discriminator_loss", "minimax_generator_loss",
    "non_saturating_generator_loss", "Dropout", "Maxout",
]
