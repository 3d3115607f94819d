#include "core/bank_options.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "core/testing/status_matchers.h"

namespace hopfield {
namespace {

using ::hopfield::testing::IsOk;
using ::hopfield::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

BankOptions Valid() {
  BankOptions options;
  options.dim = 8;
  return options;
}

TEST(BankOptionsTest, DefaultsAreValidOnceDimIsSet) {
  EXPECT_THAT(Valid().Validate(), IsOk());
  EXPECT_THAT(BankOptions().Validate(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("dim"), HasSubstr("got 0"))));
}

struct InvalidCase {
  const char* field;
  void (*mutate)(BankOptions*);
  const char* value;
};

TEST(BankOptionsTest, RejectsEachOutOfRangeField) {
  const std::vector<InvalidCase> cases = {
      {"dim", [](BankOptions* o) { o->dim = 65537; }, "65537"},
      {"entmax_alpha", [](BankOptions* o) { o->entmax_alpha = 1.0f; }, "1"},
      {"entmax_alpha", [](BankOptions* o) { o->entmax_alpha = 2.5f; }, "2.5"},
      {"beta", [](BankOptions* o) { o->beta = -1.0f; }, "-1"},
      {"beta", [](BankOptions* o) { o->beta = std::nanf(""); }, "nan"},
      {"beta", [](BankOptions* o) { o->beta = 2e6f; }, "2e+06"},
      {"beta", [](BankOptions* o) { o->beta = 1e-39f; }, "1e-39"},
      {"max_iterations", [](BankOptions* o) { o->max_iterations = 0; }, "0"},
      {"max_iterations", [](BankOptions* o) { o->max_iterations = 1001; },
       "1001"},
      {"tolerance", [](BankOptions* o) { o->tolerance = -0.1f; }, "-0.1"},
      {"tolerance", [](BankOptions* o) { o->tolerance = 1.0f; }, "1"},
      {"top_k", [](BankOptions* o) { o->top_k = 0; }, "0"},
      {"feature_dim", [](BankOptions* o) { o->feature_dim = 70000; }, "70000"},
  };
  for (const InvalidCase& c : cases) {
    BankOptions options = Valid();
    c.mutate(&options);
    EXPECT_THAT(options.Validate(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(c.field), HasSubstr(c.value))))
        << c.field << " = " << c.value;
  }
}

TEST(BankOptionsTest, ResolvedFillsFeatureDim) {
  BankOptions options = Valid();
  EXPECT_EQ(options.Resolved().feature_dim, 8u);
  options.dim = 784;
  EXPECT_EQ(options.Resolved().feature_dim, 256u);
  options.feature_dim = 32;
  EXPECT_EQ(options.Resolved().feature_dim, 32u);
}

TEST(BankOptionsTest, BankNamesFollowTheContract) {
  EXPECT_THAT(ValidateBankName("fashion-mnist_v2"), IsOk());
  EXPECT_THAT(ValidateBankName(std::string(64, 'a')), IsOk());
  for (const std::string& bad :
       {std::string(), std::string(65, 'a'), std::string("Upper"),
        std::string("has space"), std::string("dot.name"),
        std::string("nul\0x", 5)}) {
    EXPECT_THAT(
        ValidateBankName(bad),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[a-z0-9_-]")))
        << bad;
  }
}

TEST(BankOptionsTest, EnumNames) {
  EXPECT_EQ(SimilarityName(Similarity::kDot), "dot");
  EXPECT_EQ(SeparationName(Separation::kSoftmax1), "softmax1");
  EXPECT_EQ(SearchModeName(SearchMode::kApproximate), "approximate");
}

}  // namespace
}  // namespace hopfield
