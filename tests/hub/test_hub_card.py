"""The model card of an `hf://` checkpoint is read over the Hub API, bounded like a local one."""

from __future__ import annotations

from modelprov.policy import read_model_card
from modelprov.reader import open_checkpoint
from tests.hub.conftest import MINILM_REPO, TINY_REPO


def test_the_card_of_a_hub_repo_is_read_from_its_root(hub):
    with open_checkpoint(f"hf://{MINILM_REPO}") as ckpt:
        card = read_model_card(ckpt)
    assert card.license is not None and card.license.value == "apache-2.0"
    assert card.license.where.startswith(f"hf://{MINILM_REPO}@") and card.license.where.endswith("/README.md: license")
    assert card.empty  # MiniLM's card claims no base model: no lineage claim, no implicit declaration


def test_a_repo_without_a_card_claims_nothing(hub):
    with open_checkpoint(f"hf://{TINY_REPO}") as ckpt:
        card = read_model_card(ckpt)
    assert card.files == () and card.empty
