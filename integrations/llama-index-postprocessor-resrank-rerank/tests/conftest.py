"""The query and passages the postprocessor's tests share."""

QUERY = "Which tower was finished in 1889?"
TEXTS = [
    "The Eiffel Tower in Paris was completed in 1889.",
    "Photosynthesis converts light energy into chemical energy.",
    "The Great Wall of China is very long.",
    "Mitochondria produce ATP.",
    "Qdrant is a vector database.",
    "Mount Everest is the highest mountain.",
]
