import sys, tempfile, warnings, torch, cockpit
sys.path.insert(0, ".")
from tests.models.cases import CASES
for case in CASES:
    if case.name not in ("gpt2", "bert_mlm", "t5"): continue
    model, loss_fn = case.make(), case.loss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ck = cockpit.Cockpit(model, loss_fn, opt, logdir=tempfile.mkdtemp(), preset="economy", loss_input=case.loss_input)
        for b in case.batches(3):
            opt.zero_grad()
            with ck.track():
                case.loss_of(loss_fn, b.forward(model), b.target).backward()
            opt.step()
        ck.close()
    print(case.name, "replay:", ck.engines.replay)
