"""The model zoo: a versioned registry of trained property models.

Weights are safetensors (never pickle), each version has a JSON card (model
config, featurizer spec, targets, units, metrics, training data, element
tables, package versions), the catalog is SQLite by default or PostgreSQL on
a cluster, and artifacts live in a folder or on ``s3://``. A zoo model
predicts straight from raw inputs through the featurizer its card names.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import xenonscale.zoo
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.models import PropertyModel
>>> from xenonscale.zoo import Zoo, featurizer_fields
>>> fields = featurizer_fields(FeaturizerSpec.parse("composition", "classic"))
>>> model = PropertyModel.from_config(  # untrained: it stands for a trained one
...     {"in_features": len(fields["feature_labels"]), "out_features": 1, "hidden": [8]}
... )
>>> card = {**fields, "targets": ["yield_strength"], "units": {"yield_strength": "MPa"}}
>>> zoo = Zoo(Path(tempfile.mkdtemp()) / "my-zoo")
>>> ref = zoo.register("steels-yield", model, card)
>>> str(zoo.promote(ref))
'steels-yield@1'
>>> frame = xenonscale.zoo.load("steels-yield", zoo=zoo).predict(["Fe2O3", "NaCl"])
>>> frame.shape, frame.columns.tolist()
((2, 1), ['yield_strength'])
>>> zoo.close()
"""

from xenonscale.zoo.card import featurizer_fields
from xenonscale.zoo.limits import ZooLimits
from xenonscale.zoo.model import ZooModel
from xenonscale.zoo.refs import ModelRef
from xenonscale.zoo.zoo import Zoo, load

__all__ = ["ModelRef", "Zoo", "ZooLimits", "ZooModel", "featurizer_fields", "load"]
