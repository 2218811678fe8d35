# Study arm (a): random init -- no pre-training. The downstream tasks build
# the student backbone with its own initialisation (Kaiming convs, BN = 1)
# under the cell's seed; pre-training time is 0. This file only names the
# arm's student so that every arm has a config.
_base_ = ['../_base_/pretrain_cifar10_pool.py']

study_arm = dict(kind='random', labels=False, data='none')
