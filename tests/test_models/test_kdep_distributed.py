"""The SVD basis fitted by 2 gloo ranks is identical on both ranks and equal
to a 1-process fit on the same data."""
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from helpers.launch import free_port


class _Loader(list):

    def __init__(self, batches, n):
        super().__init__(batches)
        self.dataset = range(n)


def _data():
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 255, (96, 3, 32, 32), dtype=torch.uint8,
                         generator=g)


def _model():
    import kdep_mm  # noqa: F401
    from test_kdep import kdep_cfg

    from kdep_mm.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(kdep_cfg())
    model.init_weights()
    return model


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=world)
    from kdep_mm.engine import fit_basis_online
    model = _model()
    imgs = _data()[rank::world]  # each rank sees its own shard
    loader = _Loader([dict(inputs=list(imgs[i:i + 16]))
                      for i in range(0, len(imgs), 16)], 96)
    fit_basis_online(model, model.aligner, loader, show_progress=False)
    torch.save({k: v.clone() for k, v in model.aligner.state_dict().items()},
               osp.join(out_dir, f'rank{rank}.pth'))
    torch_dist.destroy_process_group()


def test_basis_identical_across_two_ranks_and_equal_to_one_process(tmp_path):
    import sys
    sys.path.insert(0, osp.dirname(__file__))
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2,
             join=True)
    r0 = torch.load(osp.join(tmp_path, 'rank0.pth'))
    r1 = torch.load(osp.join(tmp_path, 'rank1.pth'))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # bit-identical on both ranks
    assert int(r0['num_fit_samples']) == 96

    from kdep_mm.engine import fit_basis_online
    model = _model()
    imgs = _data()
    loader = _Loader([dict(inputs=list(imgs[i:i + 16]))
                      for i in range(0, 96, 16)], 96)
    fit_basis_online(model, model.aligner, loader, show_progress=False)
    single = model.aligner.state_dict()
    for k in r0:
        torch.testing.assert_close(single[k].double(), r0[k].double(),
                                   atol=1e-4, rtol=1e-4)
