#include "pkg02/l02_05.h"
#include "pkg02/l02_04.h"
#include <algorithm>
#include <numeric>

namespace l02_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 23); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 23, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l02_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_05:" + std::to_string(score({seed, seed * 13, 23}));
}
}  // namespace l02_05
