import json
import os

from libcontainer.features import features

HERE = os.path.dirname(os.path.abspath(__file__))


def test_spec_features_document_is_current():
    """spec/features.json is the project's statement of support: it must match the code."""
    with open(os.path.join(HERE, "..", "..", "spec", "features.json")) as f:
        assert json.load(f) == features()
