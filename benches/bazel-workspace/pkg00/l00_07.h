#ifndef PKG00_L00_07_H
#define PKG00_L00_07_H
#include <string>
#include <vector>

namespace l00_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_07

#endif
