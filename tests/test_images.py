import numpy as np
import pytest

from adversarial import images


def test_grid_tiles_images_row_by_row():
  tiles = np.stack([np.full((2, 3, 1), v, np.float32)
                    for v in (0.0, 0.5, 1.0)])
  picture = images.grid(tiles, rows=2, pad=1, pad_value=1.0)
  # 2 rows of 2 columns of 2 x 3 tiles, 1 pixel of padding around each.
  assert picture.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
  assert picture.dtype == np.uint8
  assert (picture[1:3, 1:4] == 0).all()        # first tile, top left
  assert (picture[1:3, 5:8] == 128).all()      # second, top right
  assert (picture[4:6, 1:4] == 255).all()      # third, bottom left
  assert (picture[4:6, 5:8] == 255).all()      # the empty place: padding
  assert images.grid(tiles).shape[:2] == (3 + 1, 3 * 4 + 1)  # 1 row of 3


@pytest.mark.parametrize("tiles,rows,message", [
    (np.zeros((0, 2, 2, 1)), None, r"images of shape \(0, 2, 2, 1\) are not "
     r"accepted: expected \[N, H, W, C\] with N >= 1"),
    (np.zeros((4, 2, 2)), None, r"images of shape \(4, 2, 2\)"),
    (np.zeros((4, 2, 2, 1)), 0, r"rows=0 is not accepted: expected a "
     r"positive integer"),
    (np.zeros((4, 2, 2, 1)), 1.5, r"rows=1.5 is not accepted"),
    # uint8 pixels would all clip to white.
    (np.full((4, 2, 2, 1), 128, np.uint8), None, r"images of dtype uint8 "
     r"are not accepted: expected floating-point images in \[0, 1\]"),
])
def test_grid_names_what_it_cannot_tile(tiles, rows, message):
  with pytest.raises(ValueError, match=message):
    images.grid(tiles, rows=rows)
