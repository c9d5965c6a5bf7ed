"""The paper's measurements, beside (not inside) the models: each experiment measures, draws its
figures, writes its figures into a model's metrics.json and registers its model-card section.

    python -m pixelcnn.experiments portraits weights/faces-portrait --data_dir ../shared/data
    python -m pixelcnn.experiments sketches weights/faces-portrait --data_dir ../shared/data
    python -m pixelcnn.experiments recognition weights/mnist-class --data_dir ../shared/data
    python -m pixelcnn.experiments autoencoder AE [AE ...] --mse MSE [MSE ...] --data_dir ../shared/data

Importing this package registers every experiment's card section (`pixelcnn.cards.card_section`).
"""

from . import autoencoder, portraits, recognition, sketches

EXPERIMENTS = {"autoencoder": autoencoder, "portraits": portraits, "recognition": recognition, "sketches": sketches}
