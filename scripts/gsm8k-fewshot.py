#!/usr/bin/env python3
"""Writes GSM8K test questions as a data set of your own (`optillm eval --dataset PATH`)
with the eight worked examples of the chain-of-thought prompt of Wei et al. 2022
("Chain-of-Thought Prompting Elicits Reasoning in Large Language Models", table 20)
before each question, in the user message; ids are the GSM8K item numbers, so records
pair with those of `--dataset gsm8k`.

    python3 scripts/gsm8k-fewshot.py [GSM8K_FILE] [LIMIT] > gsm8k-8shot.jsonl

GSM8K_FILE defaults to the file `optillm pull gsm8k` caches; LIMIT to 200.
"""
import gzip
import json
import os
import sys

EXAMPLES = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
     "After they are done, there will be 21 trees. How many trees did the grove workers "
     "plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. "
     "So there must have been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
     "the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
     "have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had "
     "32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. "
     "How many lollipops did Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he "
     "gave Denny 20 - 12 = 8. The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How "
     "many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is "
     "4 more toys. 5 + 4 = 9. The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed "
     "each day, from monday to thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. "
     "So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost "
     "2 more. How many golf balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
     "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have "
     "left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So "
     "she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8."),
]


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/optillm/datasets/gsm8k-test.olmo.jsonl.gz")
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    shots = "\n\n".join(f"Q: {q}\nA: {a}" for q, a in EXAMPLES)
    with gzip.open(path, "rt") as f:
        for n, line in enumerate(f):
            if n >= limit:
                break
            row = json.loads(line)
            doc = row["doc"]
            gold = doc["answer"].split("####")[-1].strip().replace(",", "")
            question = ("Answer the question the way these examples do.\n\n"
                        f"{shots}\n\nQ: {doc['question']}")
            print(json.dumps({"id": str(row.get("doc_id", n)), "question": question,
                              "answer": gold, "kind": "number"}))


if __name__ == "__main__":
    main()
