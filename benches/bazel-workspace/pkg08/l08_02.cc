#include "pkg08/l08_02.h"
#include "pkg08/l08_01.h"
#include <algorithm>
#include <numeric>

namespace l08_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 74); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 74, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l08_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_02:" + std::to_string(score({seed, seed * 12, 74}));
}
}  // namespace l08_02
