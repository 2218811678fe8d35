"""benchmarks/store_open_time.py (issue 16, item 9) runs end to end on a
tiny store and reports the open times docs/reliability.md quotes."""
import os.path as osp

from helpers.paths import REPO
from helpers.scripts import load_script



def test_store_open_time_benchmark_smoke(tmp_path, capsys):
    bench = load_script(osp.join(REPO, 'benchmarks', 'store_open_time.py'))
    res = bench.main(['--dir', str(tmp_path), '--gib', '0.002',
                      '--repeats', '2', '--no-imagenet-shards'])
    store = res['store']
    assert store['num_shards'] == 1 and store['num_samples'] == 262
    for key in ('first_cold_s', 'first_warm_s', 'later_median_s',
                'sizes_only_median_s', 'get_s', 'get_uncapped_s'):
        assert store[key] >= 0
    assert len(store['later_s']) == 2
    assert '| store | first open, cold |' in capsys.readouterr().out
