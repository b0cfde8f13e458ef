"""The data directory's queue secrets: the Redis password and the RE Manager's 0MQ key pair,
generated once, mode 0600, and refused in one sentence when a key file is missing or wrong."""

from __future__ import annotations

import os
import stat

import pytest
from bluesky_queueserver import generate_zmq_keys, generate_zmq_public_key

from mc_beamline.storage import DataDir


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_password_and_key_pair_are_private_generated_once_and_belong_together(tmp_path):
    data_dir = DataDir(tmp_path / "dd")
    password = data_dir.redis_password()
    public, private = data_dir.zmq_keys()
    assert len(password) == 64 and generate_zmq_public_key(private) == public
    for path in (data_dir.redis_password_file, data_dir.zmq_private_key_file, data_dir.zmq_public_key_file):
        assert mode(path) == 0o600, path
    again = DataDir(tmp_path / "dd")
    assert again.redis_password() == password and again.zmq_keys() == (public, private)
    assert again.zmq_public_key() == public
    assert not [p.name for p in data_dir.queue.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"cannot be read from .*zmq_public_key.*; start the queue once or copy the key file there\.$"),
        ("not a key\n", r"does not hold a 0MQ public key \(40 z85 characters\)\.$"),
    ],
)
def test_a_missing_or_malformed_public_key_file_is_one_sentence(tmp_path, content, message):
    data_dir = DataDir(tmp_path / "dd")
    data_dir.queue.mkdir(parents=True)
    if content is not None:
        data_dir.zmq_public_key_file.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        data_dir.zmq_public_key()
    assert "\n" not in str(error.value)


def test_a_public_key_of_another_pair_is_refused(tmp_path):
    data_dir = DataDir(tmp_path / "dd")
    data_dir.zmq_keys()
    data_dir.zmq_public_key_file.write_text(generate_zmq_keys()[0])
    with pytest.raises(ValueError, match=r"does not belong to the private key"):
        data_dir.zmq_keys()


def test_a_malformed_private_key_is_refused_without_showing_it(tmp_path):
    data_dir = DataDir(tmp_path / "dd")
    data_dir.queue.mkdir(parents=True)
    data_dir.zmq_private_key_file.write_text("secret-but-wrong\n")
    with pytest.raises(ValueError, match=r"is not a 40-character z85 key") as error:
        data_dir.zmq_keys()
    assert "secret-but-wrong" not in str(error.value)
