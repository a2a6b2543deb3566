"""The TensorFlow-only export (``dpcnn export --format savedmodel``): both test-time feature models
and the caption tokenisation in one SavedModel that ``tf.saved_model.load`` opens without dpcnn,
Keras' custom layers or ``vocab.json``.

    encode_images       images float32 [B, H, W, 3] (RGB 0-255, any size)  → embeddings float32 [B, D]
    encode_image_bytes  image_bytes string [B] (JPEG, PNG, GIF, BMP, WebP)  → embeddings float32 [B, D]
    encode_texts        texts string [B] (raw UTF-8 captions)               → embeddings float32 [B, D],
                                                                                num_words int32 [B]
    tokenize            texts string [B]                                    → tokens int32 [B, L],
                                                                                num_words int32 [B]

Each is a signature (TF Serving; ``encode_images`` is also ``serving_default``) and a method of
the loaded object; every output is a dict. :class:`CaptionTokenizer` is the official tokenisation
of :meth:`dpcnn.data.vocab.Vocabulary.encode_many` in TensorFlow ops (PAPER_SPEC §2.1): optional
lower-casing, a split on every ``split_chars`` character (and every ASCII whitespace character when
the space is one), empty pieces dropped, out-of-vocabulary words dropped (not mapped to an id),
the first ``max_len`` words kept, left-aligned with 0 for empty slots. The position shifts, the
pre-resize, the flip, the sums and the L2 normalisation are inside the two feature models
(:mod:`dpcnn.model.features`), traced into the graph as they are.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from dpcnn.data.vocab import Vocabulary

WHITESPACE = "\t\n\r\f\v"
"""Split characters too when the space is one (:func:`dpcnn.data.vocab._split_table`)."""

SIGNATURES = ("encode_images", "encode_image_bytes", "encode_texts", "tokenize")


class CaptionTokenizer(tf.Module):
    """Raw captions string [B] → (ids int32 [B, max_len], num_words int32 [B]), equal to
    ``vocab.encode_many(texts, max_len)`` (checked id by id in tests/test_export_savedmodel.py).

    The word → id table is a ``tf.lookup.StaticHashTable`` (id 0, "missing", is dropped). Lower-casing
    (``vocab.lowercase``) is ICU's full Unicode mapping (``tf.strings.lower(encoding="utf-8")``),
    which equals Python's ``str.lower`` (final sigma included) except for the few characters added
    in a Unicode version newer than TensorFlow's ICU. A NUL character does not cut the caption short
    (ICU stops at one: the caption is lower-cased piece by piece between NULs).
    """

    def __init__(self, vocab: Vocabulary, max_len: int, name: str = "caption_tokenizer"):
        super().__init__(name=name)
        if max_len < 1:
            raise ValueError(f"max_len must be ≥ 1, got {max_len}")
        self.max_len = int(max_len)
        self.lowercase = bool(vocab.lowercase)
        self.separator = vocab.split_chars[0]
        chars = vocab.split_chars + (WHITESPACE if " " in vocab.split_chars else "")
        # every character as \x{hex}: nothing in split_chars can be special in the RE2 class
        self.pattern = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set(chars))) + "]"
        # id 0 (the default) is dropped: empty pieces and unknown words; a table needs one key
        keys, ids = (list(vocab.words), list(range(1, len(vocab) + 1))) if len(vocab) else ([""], [0])
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(ids, tf.int64)),
            default_value=0)

    def __call__(self, texts):
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.lowercase:
            # ICU stops at a NUL: lower-case the pieces between NULs, then put the NULs back (a
            # string attribute cannot hold one, so each piece gets one and the last is cut off)
            pieces = tf.ragged.map_flat_values(
                lambda p: tf.strings.join([tf.strings.lower(p, encoding="utf-8"), tf.constant("\x00")]),
                tf.strings.split(texts, tf.constant("\x00")))
            joined = tf.strings.reduce_join(pieces, axis=-1)
            texts = tf.strings.substr(joined, tf.zeros_like(tf.strings.length(joined)), tf.strings.length(joined) - 1)
        texts = tf.strings.regex_replace(texts, self.pattern, self.separator)
        tokens = tf.strings.split(texts, self.separator)
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)  # "" and unknown words: 0
        ids = tf.ragged.boolean_mask(ids, ids > 0)[:, :self.max_len]
        num_words = tf.cast(ids.row_lengths(), tf.int32)
        dense = tf.cast(ids.to_tensor(default_value=0, shape=[None, self.max_len]), tf.int32)
        return dense, num_words


def _decode(contents):
    """Encoded image bytes → uint8 [h, w, 3] RGB with the decoders of :func:`dpcnn.data.images.decode_image`
    (JPEG with the accurate integer IDCT; PNG, GIF's first frame, BMP, WebP)."""
    image = tf.cond(tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff"),
                    lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
                    lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))
    return tf.ensure_shape(image, [None, None, 3])


def write_savedmodel(image_model, text_model, vocab: Vocabulary, out: str | Path) -> dict:
    """Write the SavedModel of the module docstring into ``out`` (saved_model.pb, variables/, …);
    returns its signatures as {name: {"inputs": {…}, "outputs": {…}}} with shapes and dtypes."""
    import keras

    max_len = int(text_model.input_shape[-1])
    dim = int(text_model.output_shape[-1])
    tokenizer = CaptionTokenizer(vocab, max_len)

    def encode_images(images):
        return {"embeddings": image_model(images, training=False)}

    def encode_image_bytes(image_bytes):
        def one(contents):
            return image_model(tf.cast(_decode(contents), tf.float32)[None], training=False)[0]

        return {"embeddings": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([dim], tf.float32))}

    def encode_texts(texts):
        tokens, num_words = tokenizer(texts)
        return {"embeddings": text_model(tokens, training=False), "num_words": num_words}

    def tokenize(texts):
        tokens, num_words = tokenizer(texts)
        return {"tokens": tokens, "num_words": num_words}

    archive = keras.export.ExportArchive()
    archive.track(image_model)
    archive.track(text_model)
    archive.track(tokenizer)  # the lookup table (a resource the endpoints use)
    texts = [tf.TensorSpec([None], tf.string, name="texts")]
    archive.add_endpoint("encode_images", encode_images, [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    archive.add_endpoint("encode_image_bytes", encode_image_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("encode_texts", encode_texts, texts)
    archive.add_endpoint("tokenize", tokenize, texts)
    archive.write_out(str(out), verbose=False)
    image = {"embeddings": ("float32", [None, dim])}
    return {
        "encode_images": {"inputs": {"images": ("float32", [None, None, None, 3])}, "outputs": image},
        "encode_image_bytes": {"inputs": {"image_bytes": ("string", [None])}, "outputs": image},
        "encode_texts": {"inputs": {"texts": ("string", [None])},
                         "outputs": {"embeddings": ("float32", [None, dim]), "num_words": ("int32", [None])}},
        "tokenize": {"inputs": {"texts": ("string", [None])},
                     "outputs": {"tokens": ("int32", [None, max_len]), "num_words": ("int32", [None])}},
    }
