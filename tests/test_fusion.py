import numpy as np

from boxseg.fusion import fusion_union, weight_map


class TestFusion:
    pm = np.array([[[1, 1, 0, 0, 0]]], bool)
    preds = (np.array([[[1, 0, 1, 0, 0]]], bool), np.array([[[1, 0, 0, 1, 0]]], bool), np.array([[[1, 1, 0, 0, 0]]], bool))

    def test_union(self):
        assert fusion_union(self.pm, self.preds).astype(int).tolist() == [[[1, 1, 1, 1, 0]]]

    def test_weight_map_sums_and_sets_zero_to_k_plus_one(self):
        v = weight_map(self.pm, self.preds)
        assert v.tolist() == [[[4, 2, 1, 1, 4]]]  # 1+3, 1+1, 0+1, 0+1, 0 -> K+1 = 4

    def test_weight_map_without_groups(self):
        assert weight_map(self.pm, []).tolist() == [[[1, 1, 1, 1, 1]]]
