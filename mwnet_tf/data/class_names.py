"""The class names of the built-in data sets, in label order (label k is the k-th name)."""

from __future__ import annotations

CLASS_NAMES = {
    "digits": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar100": tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle
        bowl boy bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee
        clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
        forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
        lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter
        palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit
        raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
        squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
        tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()),
    "clothing1m": ("T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie",
                   "Windbreaker", "Jacket", "Down Coat", "Suit", "Shawl", "Dress", "Vest",
                   "Underwear"),
}


def default_class_names(dataset: str | None, num_classes: int) -> list[str]:
    """The class names of a known data set of `num_classes` classes, else "0", "1", ..."""
    names = CLASS_NAMES.get(dataset or "")
    if names is not None and len(names) == num_classes:
        return list(names)
    return [str(i) for i in range(num_classes)]
