import numpy as np
import SimpleITK as sitk

from boxseg.phantom import make_phantom, write_phantom_case


class TestPhantom:
    def test_deterministic_and_labelled(self):
        a, b = make_phantom(7), make_phantom(7)
        assert np.array_equal(a.image_hu, b.image_hu) and np.array_equal(a.label, b.label)
        assert set(np.unique(a.label)) == {0, 1, 2}
        assert a.spacing_mm[0] > a.spacing_mm[1]  # anisotropic: thicker slices
        tumor_hu = a.image_hu[a.label == 2].mean()
        assert -100 < tumor_hu < 250

    def test_written_in_kits_layout(self, tmp_path):
        case = write_phantom_case(3, tmp_path / "case_00003/imaging.nii.gz", tmp_path / "case_00003/segmentation.nii.gz")
        img = sitk.ReadImage(str(tmp_path / "case_00003/imaging.nii.gz"))
        lab = sitk.ReadImage(str(tmp_path / "case_00003/segmentation.nii.gz"))
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        assert np.allclose(img.GetSpacing(), case.spacing_mm[::-1]) and img.GetSize() == lab.GetSize()
