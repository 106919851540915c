#include "pkg08/l08_03.h"
#include "pkg08/l08_02.h"
#include <algorithm>
#include <numeric>

namespace l08_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 75); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 75, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l08_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_03:" + std::to_string(score({seed, seed * 13, 75}));
}
}  // namespace l08_03
