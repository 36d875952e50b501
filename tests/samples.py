"""A query and passages the ResRank core tests share (``from tests.samples import QUERY, TEXTS``)."""

QUERY = "which planet has rings"
TEXTS = [
    "Saturn has a bright ring system made of ice.",
    "Bananas are rich in potassium.",
    "Jupiter is the largest planet.",
    "The rings of Uranus were found in 1977.",
    "Paris is the capital of France.",
]
