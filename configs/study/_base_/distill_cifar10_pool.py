# Shared by the distillation arms of the KDEP study (d, e, f, h and the
# arms derived from them): the pool base plus the distiller's data
# preprocessor, student and teacher by reference, the 10% pool and the lr
# of the KD arms. Each arm adds its type, aligner / head and loss.
_base_ = ['./pretrain_cifar10_pool.py']

model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    student={{_base_.student}},
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    teacher_revise_keys={{_base_.teacher_revise_keys}})
train_dataloader = dict(dataset=dict(ann_file={{_base_.pool_10}}))
optim_wrapper = dict(optimizer=dict(lr=0.02))
