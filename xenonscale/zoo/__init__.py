"""The model zoo: a versioned registry of trained property models.

Weights are safetensors (never pickle), each version has a JSON card (model
config, featurizer spec, targets, units, metrics, training data, element
tables, package versions), the catalog is SQLite by default or PostgreSQL on
a cluster, and artifacts live in a folder or on ``s3://``. A zoo model
predicts straight from raw inputs through the featurizer its card names.

Examples
--------
>>> import xenonscale.zoo
>>> from xenonscale.zoo import Zoo
>>> zoo = Zoo("my-zoo")  # doctest: +SKIP
>>> ref = zoo.register("steels-yield", model, card)  # doctest: +SKIP
>>> zoo.promote(ref)  # doctest: +SKIP
>>> xenonscale.zoo.load("steels-yield", zoo=zoo).predict(["Fe2O3", "NaCl"])  # doctest: +SKIP
"""

from xenonscale.zoo.card import featurizer_fields
from xenonscale.zoo.limits import ZooLimits
from xenonscale.zoo.model import ZooModel
from xenonscale.zoo.refs import ModelRef
from xenonscale.zoo.zoo import Zoo, load

__all__ = ["ModelRef", "Zoo", "ZooLimits", "ZooModel", "featurizer_fields", "load"]
