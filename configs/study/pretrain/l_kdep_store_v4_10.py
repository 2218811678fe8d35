# Study arm (l): KDEP 10% from a teacher store of 4 views per image
# (_kdep_store_10.py; the study points its pipeline and fit hook at the
# `store/v4` cell's store). Against (k), the same views drawn afresh at
# every step, it measures the cost of a finite view bank.
_base_ = ['./_kdep_store_10.py']

study_arm = dict(kind='kdep_store', labels=False, data='10%', views=4)
