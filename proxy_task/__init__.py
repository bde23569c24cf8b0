"""How an architecture is scored: data, the Model Garden RetinaNet proxy, COCO AP, a TF-free surrogate."""
