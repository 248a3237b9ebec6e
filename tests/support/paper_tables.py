"""Paper tables used as test fixtures (numbers from the paper; see the method notes)."""
# Table 5 (Llama-3.2-3B, EN+EL unique neurons per layer)
TABLE5 = [342, 79, 11, 18, 15, 11, 8, 7, 8, 8, 7, 6, 9, 14, 9, 18, 81, 20, 19, 28, 38, 232, 51, 208, 114, 111, 238, 223]
# Table 6 (per-language counts, layers 0..27)
TABLE6 = {
    "en": [322, 73, 8, 11, 13, 9, 7, 6, 5, 7, 7, 5, 8, 9, 7, 10, 11, 4, 10, 9, 16, 17, 24, 70, 63, 60, 75, 108],
    "el": [21, 6, 3, 7, 2, 2, 1, 1, 3, 1, 0, 1, 1, 5, 2, 8, 70, 16, 9, 19, 22, 215, 27, 139, 51, 52, 163, 118],
    "tr": [8, 5, 3, 17, 0, 2, 0, 1, 1, 1, 1, 1, 0, 2, 1, 4, 10, 15, 9, 22, 27, 68, 47, 137, 173, 185, 180, 70],
    "hu": [8, 3, 1, 6, 1, 2, 1, 0, 0, 0, 1, 1, 0, 0, 1, 6, 8, 8, 15, 23, 18, 92, 40, 117, 190, 303, 124, 24],
}
# Table 2, as printed (the 2 of layers 11-18 at layer 18)
TABLE2_NEURONMOE_PRINTED = [6, 2, 1] + [1] * 8 + [1] * 7 + [2] + [1, 1, 4, 1, 4, 2, 2, 4, 4]
TABLE2_LAYERMOE = [5, 5, 5, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4]
TABLE9_QWEN_LAYERMOE = [5, 4, 3, 5, 4, 3, 2, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 4, 4, 3, 3]

# Table 9's Qwen NeuronMoE row as printed: 25 numbers for 24 layers, sum 37 (the text says 36)
TABLE9_QWEN_NEURONMOE_PRINTED = [4, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 6]
