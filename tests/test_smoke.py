import charlm


def test_public_api_is_importable():
    assert charlm.__version__
    assert callable(charlm.load)
    assert charlm.Sampler is not None
