"""Exports a trained generator as a SavedModel that TF Serving serves.

    from export import export_generator
    path = export_generator("runs/mnist", "serving/gan")   # serving/gan/1

The export holds the generator alone, in TF Serving's layout
`<export_dir>/<version>/`, with these signatures:

  serving_default  z      float32 [batch, latent_dim] -> images float32
                   [batch, H, W, C] in the data's pixel range
  sample           seed   int64 [batch] -> images: one image per seed, the
                   same on every call and machine (z is drawn from the prior
                   by `adversarial.rng`, exact integer arithmetic)
  sample_png       seed   int64 [batch] -> png_bytes: string [batch], PNG
                   bytes (TF Serving's REST API sends an output named
                   `*_bytes` base64-encoded, as {"b64": ...})

A conditional model's export (`--conditional`) takes one more input in every
signature, `labels` int64 [batch]: the class of each image. A label outside
[0, num_classes) fails the request with a message that names the range.
A model conditioned on clusters (`clusters` > 0) is a model of p(x): its
`sample` and `sample_png` take the seed alone and draw each image's cluster
from the clusters' training shares with it (`gan.sample_label_rows`), while
`serving_default` takes z and the cluster as `labels`.

`assets.extra/tf_serving_warmup_requests` holds one PredictionLog per
signature, which TF Serving replays before it takes traffic. The training
config and the package version travel as assets (`assets/config.json`,
`assets/version.txt`).

An export is written into a temporary directory beside the target, loaded
back and checked, synced to disk, then renamed into place: a server polling
`export_dir` never sees half a model, a failed export leaves earlier versions
as they were, and a version that appeared survives a power loss whole.
Exports to one `export_dir` started together take a version each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np
import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURES = ("serving_default", "sample", "sample_png")


class ExportError(RuntimeError):
  """The export could not be written; nothing was left half-written."""


class _GeneratorModule(tf.Module):
  """The generator with its serving signatures."""

  def __init__(self, generator, latent_dim: int, prior: str,
               output_activation: str, num_classes: int = 0,
               label_shares: Optional[np.ndarray] = None):
    super().__init__(name="generator_module")
    from adversarial.gan import sample_prior_rows
    self.generator = generator
    self._variables = list(generator.weights)
    self.latent_dim = latent_dim
    self.num_classes = num_classes
    self._prior = prior
    self._output_activation = output_activation
    self._rows = sample_prior_rows
    self._label_shares = label_shares

    z_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="z")
    seed_spec = tf.TensorSpec([None], tf.int64, name="seed")
    specs = seed_specs = lambda first: [first]
    if num_classes:
      label_spec = tf.TensorSpec([None], tf.int64, name="labels")
      specs = lambda first: [first, label_spec]
      if label_shares is None:
        seed_specs = specs
    self.serving_default = tf.function(self._from_z,
                                       input_signature=specs(z_spec))
    self.sample = tf.function(self._from_seed,
                              input_signature=seed_specs(seed_spec))
    self.sample_png = tf.function(self._png,
                                  input_signature=seed_specs(seed_spec))

  def _images(self, z, labels=None):
    if not self.num_classes:
      return tf.cast(self.generator(z, training=False), tf.float32)
    with tf.control_dependencies([
        tf.debugging.assert_equal(
            tf.shape(labels)[0], tf.shape(z)[0],
            message="expected one label per row of z (or per seed)"),
        tf.debugging.assert_non_negative(
            labels, message=f"labels must be in [0, {self.num_classes})"),
        tf.debugging.assert_less(
            labels, tf.constant(self.num_classes, tf.int64),
            message=f"labels must be in [0, {self.num_classes})")]):
      c = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
    return tf.cast(self.generator([z, c], training=False), tf.float32)

  def _from_z(self, z, labels=None):
    return {"images": self._images(z, labels)}

  def _from_seed(self, seed, labels=None):
    z = self._rows(seed, self.latent_dim, self._prior)
    if labels is None and self._label_shares is not None:
      from adversarial.gan import sample_label_rows
      labels = sample_label_rows(seed, self._label_shares)
    return {"images": self._images(z, labels)}

  def _png(self, seed, labels=None):
    images = self._from_seed(seed, labels)["images"]
    if self._output_activation == "tanh":
      images = (images + 1.0) / 2.0
    pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0),
                     tf.uint8)
    return {"png_bytes": tf.map_fn(tf.io.encode_png, pixels,
                                   fn_output_signature=tf.string)}


def next_version(export_dir: str) -> int:
  """1 + the largest integer version in `export_dir` (1 when none)."""
  if not os.path.isdir(export_dir):
    return 1
  versions = [int(n) for n in os.listdir(export_dir) if n.isdigit()]
  return max(versions, default=0) + 1


def _warmup_requests(latent_dim: int, model_name: str,
                     num_classes: int = 0,
                     seed_labels: bool = True) -> list[bytes]:
  from tensorflow_serving.apis import model_pb2
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_log_pb2
  inputs = {
      "serving_default": {"z": np.zeros([1, latent_dim], np.float32)},
      "sample": {"seed": np.array([0], np.int64)},
      "sample_png": {"seed": np.array([0], np.int64)},
  }
  if num_classes:
    for signature, request in inputs.items():
      if seed_labels or signature == "serving_default":
        request["labels"] = np.array([0], np.int64)
  records = []
  for signature in SIGNATURES:
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name,
                                       signature_name=signature))
    for key, value in inputs[signature].items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    records.append(log.SerializeToString())
  return records


def export_generator(workdir: str, export_dir: str, checkpoint: str = "best",
                     version: Optional[int] = None,
                     model_name: str = "generator") -> str:
  """Writes the generator of a training run as a servable SavedModel.

  Args:
    workdir: the training run's directory.
    export_dir: the model's base directory (TF Serving's `model_base_path`).
    checkpoint: 'best', 'last' or a `.weights.h5` path.
    version: the version to write; the next integer when None. An existing
      version is never overwritten.
    model_name: the model name the warm-up requests carry.

  Returns:
    The path of the written version, `<export_dir>/<version>`.

  Raises:
    FileNotFoundError: no such work directory or checkpoint.
    ExportError: a run of the 1-D toy data or a masked run (no images to
      serve from a seed), a bad version or model name, the version exists,
      `export_dir` cannot be written, or the written model does not
      reproduce the generator.
  """
  import adversarial
  from adversarial import cli
  from adversarial import files
  from adversarial import train_lib

  if version is not None and (not isinstance(version, int) or version < 1):
    raise ExportError(f"version={version!r} is not accepted: expected a "
                      f"positive integer (TF Serving's version directory).")
  if not isinstance(model_name, str) or not model_name.strip():
    raise ExportError(f"model_name={model_name!r} is not accepted: expected "
                      f"the name TF Serving serves the model under, e.g. "
                      f"'generator'.")
  if why := files.not_local("export_dir", export_dir):
    raise ExportError(f"{why} Export to a folder and copy the version "
                      f"folder to the bucket.")
  model, config, record = train_lib.restore(workdir, checkpoint)
  try:
    train_lib.check_image_run(config, workdir, "an image generator to serve")
  except ValueError as e:
    raise ExportError(str(e)) from None
  if config.masked:
    raise ExportError(
        f"the run in {workdir!r} is a masked (inpainting) model: expected an "
        f"unconditional or label-conditional run; complete images with "
        f"`python -m adversarial.complete` instead.")
  num_classes = getattr(model, "num_classes", 0) if config.conditional else 0
  shares = (train_lib.cluster_prior(workdir).shares if config.clusters
            else None)
  try:
    os.makedirs(export_dir, exist_ok=True)
  except OSError as e:
    raise ExportError(f"export_dir={export_dir!r} cannot be created: {e}; "
                      f"expected a writable directory.") from e
  if not os.access(export_dir, os.W_OK):
    raise ExportError(f"export_dir={export_dir!r} is not writable: expected "
                      f"a directory this process can write to.")
  chosen = version is not None
  version = version or next_version(export_dir)
  final = os.path.join(export_dir, str(version))
  if os.path.exists(final):
    raise _version_taken(export_dir, version)

  # A dot name: TF Serving only loads integer-named directories.
  tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
  try:
    assets = os.path.join(tmp, "_assets_src")
    os.makedirs(assets)
    with open(os.path.join(assets, "config.json"), "w") as f:
      f.write(config.to_json())
    with open(os.path.join(assets, "version.txt"), "w") as f:
      f.write(f"adversarial {adversarial.__version__}\n"
              f"checkpoint {os.path.basename(record['weights'])} epoch "
              f"{record.get('epoch')}\n")
    module = _GeneratorModule(model.sampler, config.latent_dim,
                              config.prior, config.g_output, num_classes,
                              label_shares=shares)
    module.config_asset = tf.saved_model.Asset(
        os.path.join(assets, "config.json"))
    module.version_asset = tf.saved_model.Asset(
        os.path.join(assets, "version.txt"))
    saved = os.path.join(tmp, "model")
    tf.saved_model.save(
        module, saved,
        signatures={"serving_default": module.serving_default,
                    "sample": module.sample,
                    "sample_png": module.sample_png})
    extra = os.path.join(saved, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
      for request in _warmup_requests(config.latent_dim, model_name,
                                      num_classes, shares is None):
        writer.write(request)
    _check(saved, model, num_classes, shares)
    files.sync_tree(saved)
    final = _move_into_place(saved, export_dir, version, chosen)
    files.sync_folder(export_dir)
  except ExportError:
    raise
  except Exception as e:
    why = (cli.io_failure(e) if isinstance(e, OSError) else
           f"{type(e).__name__}: {e}")
    raise ExportError(f"export to {final!r} failed ({why}); earlier "
                      f"versions are untouched.") from e
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def _version_taken(export_dir: str, version: int) -> ExportError:
  return ExportError(
      f"version {version} already exists at "
      f"{os.path.join(export_dir, str(version))!r}: expected a new version "
      f"(the next free one is {next_version(export_dir)}); exports are never "
      f"overwritten.")


def _move_into_place(saved: str, export_dir: str, version: int,
                     chosen: bool) -> str:
  """Renames the written model to `<export_dir>/<version>` and returns that
  path. The rename fails where the version exists (it is never replaced):
  an export started beside this one took it meanwhile. A version picked as
  the next free one then moves on to the next that is free; one the caller
  chose (`chosen`) is an error."""
  while True:
    final = os.path.join(export_dir, str(version))
    try:
      os.rename(saved, final)
      return final
    except OSError as e:
      if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
        raise
      if chosen:
        raise _version_taken(export_dir, version) from None
    version = next_version(export_dir)


def _check(path: str, model, num_classes: int = 0,
           label_shares: Optional[np.ndarray] = None) -> None:
  """Loads the written model back; its images must be the generator's."""
  loaded = tf.saved_model.load(path)
  z = model.noise_for_seed(4, 12345)
  extra, extra_pair, inputs = {}, {}, z
  if num_classes:
    labels = tf.constant([0, 1, 2, 3], tf.int64) % num_classes
    extra = {"labels": labels}
    if label_shares is None:
      extra_pair = {"labels": tf.zeros([2], tf.int64)}
    inputs = [z, tf.one_hot(labels, num_classes)]
  got = loaded.signatures["serving_default"](z=z, **extra)["images"].numpy()
  want = np.asarray(model.sampler(inputs, training=False))
  if not np.allclose(got, want, rtol=0, atol=1e-6):
    raise ExportError(
        f"the written model's images differ from the generator's by "
        f"{np.abs(got - want).max():.3g}: expected at most 1e-6.")
  seeds = tf.constant([7, 7], tf.int64)
  pair = loaded.signatures["sample"](seed=seeds, **extra_pair
                                     )["images"].numpy()
  if not np.array_equal(pair[0], pair[1]):
    raise ExportError("the written model's `sample` signature gives two "
                      "images for one seed: expected one.")


def read_metadata(path: str) -> dict:
  """The training config and version text that an export carries."""
  with open(os.path.join(path, "assets", "config.json")) as f:
    config = json.load(f)
  with open(os.path.join(path, "assets", "version.txt")) as f:
    version = f.read()
  return {"config": config, "version": version}
