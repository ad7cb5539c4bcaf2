import numpy as np

from autogan_jax.tasks import datasets


def test_digits_split_sizes_and_disjoint():
  splits = datasets.load_digits()
  assert splits.x_train.shape == (1078, 64)
  assert splits.x_valid.shape == (359, 64)
  assert splits.x_test.shape == (360, 64)
  assert splits.x_train.min() >= 0.0
  assert splits.x_train.max() <= 1.0
  rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
  # Digits has a few duplicate images; the splits share at most those.
  assert len(rows(splits.x_train) & rows(splits.x_test)) <= 5
  assert set(np.unique(splits.y_test)) == set(range(10))


def test_digits_split_is_seeded():
  a = datasets.load_digits.__wrapped__(0)
  b = datasets.load_digits.__wrapped__(0)
  c = datasets.load_digits.__wrapped__(1)
  np.testing.assert_array_equal(a.y_train, b.y_train)
  assert not np.array_equal(a.y_train, c.y_train)


def test_stdlib_file_list_sorted_without_site_packages():
  files = datasets.stdlib_source_files()
  root = datasets.stdlib_root()
  relative = [f.relative_to(root).as_posix() for f in files]
  assert relative == sorted(relative)
  assert not any(r.startswith("site-packages/") for r in relative)
  assert "os.py" in relative


def test_stdlib_text_split_by_file():
  text = datasets.load_stdlib_text(max_chars=50_000, max_eval_chars=20_000)
  assert len(text.train) == 50_000
  assert len(text.valid) == 20_000
  assert len(text.test) == 20_000
  train, valid, test = (set(text.files[k]) for k in ("train", "valid", "test"))
  assert not train & valid
  assert not train & test
  assert not valid & test
  for name in test:
    assert datasets.file_split(name) == "test"
  assert text.train.max() < datasets.CHAR_VOCAB_SIZE


def test_stdlib_text_is_deterministic():
  a = datasets.load_stdlib_text.__wrapped__(20_000, 5_000)
  b = datasets.load_stdlib_text.__wrapped__(20_000, 5_000)
  np.testing.assert_array_equal(a.train, b.train)
  assert a.files == b.files


def test_encode_text_maps_non_ascii():
  ids = datasets.encode_text("aé")
  assert ids[0] == ord("a")
  assert all(i == datasets.NON_ASCII_ID for i in ids[1:])
