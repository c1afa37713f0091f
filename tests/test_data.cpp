// Token files (errors named), the sampler of SPEC section 3, and the byte-level corpus builder.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/sampler.h"
#include "data/token_file.h"
#include "test_util.h"

namespace moe {

using test::error_of;

TEST(TokenFile, SamplesAreShiftedWindowsOfSeqLenPlusOne) {
  auto dir = test::temp_dir("token_file");
  std::vector<uint16_t> toks(21);
  for (int i = 0; i < 21; ++i) toks[i] = uint16_t(i);
  test::write_tokens(dir + "/a.bin", toks);
  TokenFile f(dir + "/a.bin", "uint16", 4);
  EXPECT_EQ(f.num_samples(), 5);  // (21 - 1) / 4
  std::vector<int32_t> in(4), tg(4);
  f.read_sample(2, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<int32_t>{8, 9, 10, 11}));
  EXPECT_EQ(tg, (std::vector<int32_t>{9, 10, 11, 12}));
}

TEST(TokenFile, BadFilesGetNamedErrors) {
  auto dir = test::temp_dir("token_file_errors");
  EXPECT_NE(error_of([&] { TokenFile(dir + "/missing.bin", "uint16", 4); }).find("missing.bin"), std::string::npos);
  std::ofstream(dir + "/empty.bin").close();
  EXPECT_NE(error_of([&] { TokenFile(dir + "/empty.bin", "uint16", 4); }).find("is empty"), std::string::npos);
  test::write_tokens(dir + "/short.bin", {1, 2, 3});
  EXPECT_NE(error_of([&] { TokenFile(dir + "/short.bin", "uint16", 4); }).find("fewer than"), std::string::npos);
  { std::ofstream(dir + "/odd.bin") << "abc"; }
  EXPECT_NE(error_of([&] { TokenFile(dir + "/odd.bin", "uint16", 1); }).find("whole number"), std::string::npos);
  test::write_tokens(dir + "/big.bin", {1, 2, 300, 4, 5, 6});
  TokenFile big(dir + "/big.bin", "uint16", 2);
  auto msg = error_of([&] { big.check_vocab(256); });
  EXPECT_NE(msg.find("token 300 at position 2"), std::string::npos) << msg;
}

TEST(Sampler, UnshuffledOrderFollowsSpec) {
  Sampler s(10, 4, false, 1);
  // step 3 covers positions 12..15 -> samples 2..5; dp=2: rank 1 takes 4, 5; micro-batch size 1
  EXPECT_EQ(s.micro_batch(3, 1, 2, 0, 1), (std::vector<int64_t>{4}));
  EXPECT_EQ(s.micro_batch(3, 1, 2, 1, 1), (std::vector<int64_t>{5}));
  EXPECT_EQ(s.micro_batch(2, 0, 1, 0, 4), (std::vector<int64_t>{8, 9, 0, 1}));  // wraps modulo N
}

TEST(Sampler, ShuffledIsAPermutationPerEpochAndLayoutInvariant) {
  const int64_t N = 37, B = 8;
  Sampler one(N, B, true, 42);
  std::vector<int64_t> order;
  for (int64_t p = 0; p < N; ++p) order.push_back(one.sample_at(p));
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), size_t(N));
  EXPECT_NE(order[0] * 1000 + order[1], int64_t(0 * 1000 + 1));  // actually shuffled
  std::vector<int64_t> epoch1;
  for (int64_t p = N; p < 2 * N; ++p) epoch1.push_back(one.sample_at(p));
  EXPECT_NE(order, epoch1);  // a new permutation each epoch
  // Any (dp, micro_batch) split of a step reads the same samples in the same global order.
  for (int64_t step = 0; step < 6; ++step) {
    auto ref = one.micro_batch(step, 0, 1, 0, int(B));
    for (int dp : {2, 4}) {
      for (int mb : {1, 2}) {
        Sampler s(N, B, true, 42);
        std::vector<int64_t> got;
        for (int r = 0; r < dp; ++r)
          for (int m = 0; m < int(B / dp / mb); ++m) {
            auto part = s.micro_batch(step, r, dp, m, mb);
            got.insert(got.end(), part.begin(), part.end());
          }
        EXPECT_EQ(got, ref) << "step " << step << " dp " << dp << " mb " << mb;
      }
    }
  }
}

TEST(ByteCorpus, SplitsEveryFileAndSkipsBinaries) {
  auto dir = test::temp_dir("corpus");
  { std::ofstream(dir + "/a.txt") << std::string(100, 'a'); }
  { std::ofstream(dir + "/b.txt") << std::string(50, 'b'); }
  {
    std::ofstream bin(dir + "/c.bin", std::ios::binary);
    bin.write("x\0y", 3);
  }
  auto stats = build_byte_corpus({dir}, 0.1, dir + "/train.tok", dir + "/valid.tok");
  EXPECT_EQ(stats.files, 2);
  EXPECT_EQ(stats.train_tokens + stats.valid_tokens, 101 + 51);  // newline appended to each file
  TokenFile valid(dir + "/valid.tok", "uint16", 1);
  std::vector<int32_t> in(1), tg(1);
  std::string text;
  for (int64_t j = 0; j < valid.num_samples(); ++j) {
    valid.read_sample(j, in.data(), tg.data());
    text.push_back(char(in[0]));
  }
  EXPECT_NE(text.find('a'), std::string::npos);  // both sources appear in validation
  EXPECT_NE(text.find('b'), std::string::npos);
  EXPECT_EQ(byte_detokenize(byte_tokenize("héllo")), "héllo");
}

}  // namespace moe
