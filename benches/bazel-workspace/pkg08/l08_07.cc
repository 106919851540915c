#include "pkg08/l08_07.h"
#include "pkg08/l08_06.h"
#include <algorithm>
#include <numeric>

namespace l08_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 79); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 79, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l08_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_07:" + std::to_string(score({seed, seed * 4, 79}));
}
}  // namespace l08_07
