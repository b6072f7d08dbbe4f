"""README.md's "In your own code" example runs as printed, on small data."""

import os
import re

import keras
import numpy as np

from conftest import REPO


def _readme_example() -> str:
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  match = re.search(r"## In your own code\n\n```python\n(.*?)```", readme,
                    re.S)
  assert match, "README.md has no python block under 'In your own code'"
  return match.group(1)


def test_readme_example_trains_saves_and_reloads(tmp_path, monkeypatch):
  code = _readme_example()
  assert "epochs=10" in code
  monkeypatch.chdir(tmp_path)
  images = np.random.default_rng(0).uniform(
      size=(200, 28, 28, 1)).astype(np.float32)
  scope = {"images": images}
  # One epoch of two batches shows every line working; ten would only be
  # slower.
  exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"),
       scope)

  gan, samples = scope["gan"], scope["samples"]
  assert gan.d_optimizer.iterations.numpy() == 2
  assert gan.g_optimizer.iterations.numpy() == 2
  assert samples.shape == (64, 28, 28, 1)
  assert np.all((samples >= 0) & (samples <= 1))
  restored = keras.models.load_model(tmp_path / "gan.keras")
  assert type(restored).__name__ == "GAN"
  assert restored.update == "alternating"
  np.testing.assert_allclose(restored.generate(8, seed=1),
                             gan.generate(8, seed=1), atol=1e-6)
